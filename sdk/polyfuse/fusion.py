"""Fusion of unimodal posteriors (experts) into one joint posterior over the shared latent.

Every method is computed over the experts present in each row. A row with no expert
present gets the prior N(0, I), so downstream losses stay finite.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .posterior import DiagonalGaussian, GaussianMixture

FUSION_METHODS = ("poe", "moe", "mopoe")

# Mixture of products enumerates every subset of modalities, 2**M of them.
MAX_MOPOE_MODALITIES = 10


@dataclass
class Experts:
    """Unimodal posteriors stacked over modalities.

    ``mean`` and ``logvar`` have shape (B, M, D); ``present`` (B, M) marks the experts
    that exist in each row. Absent entries may hold any finite value.
    """

    mean: torch.Tensor
    logvar: torch.Tensor
    present: torch.Tensor
    names: tuple[str, ...]

    def subset(self, keep: torch.Tensor) -> Experts:
        """Return the same experts with ``present`` restricted to ``keep`` (B, M)."""
        return Experts(self.mean, self.logvar, self.present & keep, self.names)

    def only(self, name: str) -> Experts:
        """Return the experts with every modality but ``name`` marked absent."""
        keep = torch.zeros_like(self.present)
        keep[:, self.names.index(name)] = True
        return self.subset(keep)

    def unimodal(self, name: str) -> DiagonalGaussian:
        """Return the posterior of one modality as its encoder produced it, without the prior."""
        index = self.names.index(name)
        return DiagonalGaussian(self.mean[:, index], self.logvar[:, index])


def product_of_experts(experts: Experts) -> DiagonalGaussian:
    """Fuse the present experts and a N(0, I) prior expert by multiplying their densities.

    The product of Gaussians is Gaussian with precision equal to the sum of precisions and
    mean equal to the precision-weighted mean (Wu and Goodman 2018, MVAE).
    """
    present = experts.present.unsqueeze(-1).to(experts.mean.dtype)  # (B, M, 1)
    precision = torch.exp(-experts.logvar.clamp(-30.0, 20.0)) * present  # (B, M, D)
    total_precision = 1.0 + precision.sum(dim=1)  # the prior expert contributes precision 1
    mean = (precision * experts.mean).sum(dim=1) / total_precision
    return DiagonalGaussian(mean, -torch.log(total_precision))


def mixture_of_experts(experts: Experts) -> GaussianMixture:
    """Fuse the present experts as an equally weighted mixture (Shi et al. 2019, MMVAE).

    A prior component is appended; it has weight one in rows with no expert present and
    weight zero elsewhere.
    """
    batch, _, dim = experts.mean.shape
    prior = torch.zeros(batch, 1, dim, dtype=experts.mean.dtype, device=experts.mean.device)
    means = torch.cat([experts.mean, prior], dim=1)  # (B, M + 1, D)
    logvars = torch.cat([experts.logvar, prior], dim=1)
    weights = _normalised_weights(experts.present)
    return GaussianMixture(means, logvars, weights)


def mixture_of_products_of_experts(experts: Experts) -> GaussianMixture:
    """Fuse as an equally weighted mixture of the products of every non-empty subset of present experts.

    This is the MoPoE posterior of Sutter et al. 2021; each product includes the prior
    expert, and an empty-subset component (the prior) takes rows with nothing present.
    """
    count = experts.mean.shape[1]
    if count > MAX_MOPOE_MODALITIES:
        raise ConfigError(
            f"mixture of products of experts enumerates 2**M subsets and supports at most "
            f"{MAX_MOPOE_MODALITIES} modalities, got {count}; use fusion 'poe' or 'moe'"
        )
    subsets = all_subsets(count, device=experts.mean.device)  # (K, M), first row is the empty set
    # (B, K, M): each subset's experts intersected with those present in the row.
    members = subsets.unsqueeze(0) & experts.present.unsqueeze(1)
    precision = torch.exp(-experts.logvar.clamp(-30.0, 20.0))  # (B, M, D)
    weights_by_member = members.to(experts.mean.dtype)  # (B, K, M)
    total_precision = 1.0 + torch.einsum("bkm,bmd->bkd", weights_by_member, precision)
    means = torch.einsum("bkm,bmd->bkd", weights_by_member, precision * experts.mean) / total_precision
    # A subset takes part only when all its members are present in the row.
    valid = (subsets.unsqueeze(0) <= experts.present.unsqueeze(1)).all(dim=-1)  # (B, K)
    weights = _normalised_weights(valid[:, 1:])  # the prior column comes last
    # Move the empty subset (the prior) from the first to the last component to match the weights.
    order = torch.cat([torch.arange(1, subsets.shape[0]), torch.tensor([0])]).to(means.device)
    return GaussianMixture(means[:, order], -torch.log(total_precision[:, order]), weights)


def fuse(experts: Experts, method: str) -> DiagonalGaussian | GaussianMixture:
    """Fuse experts with ``method``, one of :data:`FUSION_METHODS`."""
    if method == "poe":
        return product_of_experts(experts)
    if method == "moe":
        return mixture_of_experts(experts)
    if method == "mopoe":
        return mixture_of_products_of_experts(experts)
    raise ConfigError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")


def all_subsets(count: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Return every subset of ``count`` items as a bool matrix (2**count, count), the empty set first."""
    rows = list(itertools.product([False, True], repeat=count))
    rows.sort(key=sum)
    return torch.tensor(rows, dtype=torch.bool, device=device).reshape(len(rows), count)


def _normalised_weights(members: torch.Tensor) -> torch.Tensor:
    """Weights (B, K + 1) uniform over the True entries of ``members`` (B, K), with a last prior column.

    The prior column has weight one where a row has no True entry.
    """
    weights = members.to(torch.float32)
    empty = (weights.sum(dim=1, keepdim=True) == 0).to(torch.float32)
    weights = torch.cat([weights, empty], dim=1)
    return weights / weights.sum(dim=1, keepdim=True)
