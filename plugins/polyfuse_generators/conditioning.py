"""Latent normalisation and condition embedding, shared by the learned generators (GAN and diffusion).

Both generators work on latents standardised per dimension with statistics of the
training targets, so noise schedules and initialisations see unit-scale data whatever
the scale of the VAE's latent. A condition is the fused posterior of the given modalities
(mean and log-variance, in the same standardised space). The absence of a condition has
its own learned null embedding, which classifier-free guidance contrasts with the condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polyfuse.config import require
from polyfuse.fusion import product_of_experts
from polyfuse.generation.latents import LatentDataset
from polyfuse.generator import Condition, GeneratorConfig

# Minimum std of a latent dimension, which keeps standardisation finite for dimensions that the VAE left unused.
_MIN_STD = 1e-3


@dataclass(frozen=True)
class LatentGeneratorConfig(GeneratorConfig):
    """Settings that the GAN and diffusion generators share."""

    condition_dropout: float = 0.15  # probability of training a row without its condition, in [0, 1)
    sample_targets: bool = True  # if True, train on draws from each record's posterior, otherwise on its mean

    def __post_init__(self) -> None:
        require(0 <= self.condition_dropout < 1, f"condition_dropout must be in [0, 1), got {self.condition_dropout}")
        require(isinstance(self.sample_targets, bool), f"sample_targets must be true or false, got {self.sample_targets!r}")


class LatentNormalizer(nn.Module):
    """Per-dimension standardisation of latents, with the mean and std saved in the state dict."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))

    @torch.no_grad()
    def fit(self, latents: LatentDataset, sample_targets: bool) -> None:
        """Set the mean and std to those of the training targets, the product of each record's present experts.

        The targets are posterior draws if ``sample_targets`` is True and posterior means
        otherwise. The variance of draws is computed without drawing, as the variance of the
        means plus the mean posterior variance (the law of total variance).
        """
        posterior = product_of_experts(latents.experts)
        variance = posterior.mean.var(dim=0)  # (D,)
        if sample_targets:
            variance = variance + posterior.var.mean(dim=0)
        self.mean.copy_(posterior.mean.mean(dim=0).to(self.mean.device))
        self.std.copy_(variance.sqrt().clamp_min(_MIN_STD).to(self.std.device))

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.mean) / self.std

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.std + self.mean

    def normalize_logvar(self, logvar: torch.Tensor) -> torch.Tensor:
        """Return ``logvar`` in the standardised space, where dividing by std subtracts 2 log(std)."""
        return logvar - 2.0 * torch.log(self.std)


class ConditionEmbedding(nn.Module):
    """Network that maps a condition's mean and log-variance, (B, D) each, to an embedding (B, embedding_dim).

    Rows marked unconditional get a learned null embedding instead.
    """

    def __init__(self, latent_dim: int, embedding_dim: int):
        super().__init__()
        self.project = nn.Sequential(
            nn.Linear(2 * latent_dim, embedding_dim),
            nn.SiLU(),
            nn.Linear(embedding_dim, embedding_dim),
        )
        self.null = nn.Parameter(torch.zeros(embedding_dim))

    def forward(self, mean: torch.Tensor, logvar: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
        embedded = self.project(torch.cat([mean, logvar], dim=-1))  # (B, 2D) -> (B, E)
        return torch.where(unconditional.unsqueeze(-1), self.null.to(embedded.dtype), embedded)


def condition_inputs(
    normalizer: LatentNormalizer, condition: Condition | None, num_samples: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the standardised condition mean and log-variance and the unconditional mask, for sampling.

    Without a condition, the mean and log-variance are zeros and every row is marked unconditional.
    """
    dim = normalizer.mean.shape[0]
    if condition is None:
        zeros = torch.zeros(num_samples, dim, device=device)
        return zeros, zeros.clone(), torch.ones(num_samples, dtype=torch.bool, device=device)
    mean, logvar = condition.features()
    mean = normalizer.normalize(mean.to(device))
    logvar = normalizer.normalize_logvar(logvar.to(device))
    return mean, logvar, torch.zeros(num_samples, dtype=torch.bool, device=device)

