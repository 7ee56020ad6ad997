"""Distribution measures for generated latents: Fréchet distance, diversity within a condition, and mode coverage.

All functions take latents as arrays (N, D) in one space, for example the VAE's latent
space or a generator's standardised one, and compare them with real latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Generated clusters that hold less than this fraction of their real share count as missed modes.
MISSED_MODE_FRACTION = 0.25


@dataclass
class ModeCoverage:
    """Coverage of the clusters (modes) of real latents by generated latents."""

    coverage: float  # real probability mass of the clusters that samples reach, in [0, 1]
    diversity_ratio: float  # mean pairwise distance of samples over that of real latents, about 1 when matched
    largest_cluster_share: float  # share of samples in their most popular cluster, in [0, 1]
    clusters: int  # k of the k-means clustering of the real latents


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """Return the Fréchet distance between Gaussians fitted to ``real`` and ``generated`` (N, D) latents.

    This is the statistic of FID (Heusel et al. 2017), applied to latents directly:
    ``|mu_r - mu_g|^2 + Tr(C_r + C_g - 2 (C_r C_g)^(1/2))``.
    """
    from scipy import linalg

    real, generated = _as_rows(real, "real"), _as_rows(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real latents have {real.shape[1]} dimensions and generated ones {generated.shape[1]}; they must match")
    mean_real, mean_generated = real.mean(axis=0), generated.mean(axis=0)
    covariance_real = np.atleast_2d(np.cov(real, rowvar=False))
    covariance_generated = np.atleast_2d(np.cov(generated, rowvar=False))
    root, _ = linalg.sqrtm(covariance_real @ covariance_generated, disp=False)
    if not np.isfinite(root).all():
        # A singular product (rank-deficient samples) is regularised as in the reference FID code.
        offset = np.eye(real.shape[1]) * 1e-6
        root = linalg.sqrtm((covariance_real + offset) @ (covariance_generated + offset))
    root = np.real(root)
    difference = mean_real - mean_generated
    return float(difference @ difference + np.trace(covariance_real) + np.trace(covariance_generated) - 2.0 * np.trace(root))


def within_condition_diversity(latents: np.ndarray, groups: np.ndarray) -> float:
    """Return the mean, over conditions, of the mean pairwise Euclidean distance between samples of one condition.

    ``groups`` (N,) gives each sample's condition; conditions with a single sample are
    skipped. Zero means every condition always yields the same latent.
    """
    latents = _as_rows(latents, "latents")
    groups = np.asarray(groups)
    if groups.shape != (latents.shape[0],):
        raise ValueError(f"groups must have shape ({latents.shape[0]},), one entry per latent, got {groups.shape}")
    spreads = []
    for group in np.unique(groups):
        members = latents[groups == group]
        if len(members) >= 2:
            spreads.append(mean_pairwise_distance(members))
    if not spreads:
        raise ValueError("every condition has a single sample; draw at least 2 samples per condition")
    return float(np.mean(spreads))


def mean_pairwise_distance(latents: np.ndarray) -> float:
    """Return the mean Euclidean distance over all pairs of distinct rows of (N, D) latents, N >= 2."""
    latents = _as_rows(latents, "latents")
    if latents.shape[0] < 2:
        raise ValueError(f"need at least 2 latents for a pairwise distance, got {latents.shape[0]}")
    squared = (latents**2).sum(axis=1)
    distances = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2.0 * latents @ latents.T, 0.0, None))  # (N, N)
    count = latents.shape[0]
    return float(distances.sum() / (count * (count - 1)))


def mode_coverage(real: np.ndarray, generated: np.ndarray, clusters: int = 20, seed: int = 0) -> ModeCoverage:
    """Cluster ``real`` latents with k-means and measure how generated latents spread over the clusters.

    A cluster is reached when its share of the samples is at least
    :data:`MISSED_MODE_FRACTION` of its share of the real latents. A generator that has
    collapsed onto a few modes reaches few clusters and has a low diversity ratio.
    """
    from sklearn.cluster import KMeans

    real, generated = _as_rows(real, "real"), _as_rows(generated, "generated")
    clusters = min(clusters, real.shape[0])
    if clusters < 2:
        raise ValueError(f"mode coverage needs at least 2 clusters and 2 real latents, got clusters={clusters}")
    kmeans = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(real)
    real_share = np.bincount(kmeans.labels_, minlength=clusters) / real.shape[0]
    generated_share = np.bincount(kmeans.predict(generated), minlength=clusters) / generated.shape[0]
    reached = generated_share >= MISSED_MODE_FRACTION * real_share
    return ModeCoverage(
        coverage=float(real_share[reached].sum()),
        diversity_ratio=mean_pairwise_distance(generated) / max(mean_pairwise_distance(real), 1e-12),
        largest_cluster_share=float(generated_share.max()),
        clusters=clusters,
    )


def _as_rows(array: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return values
