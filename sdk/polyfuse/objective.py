"""The training objective of the multimodal VAE.

Two parts, each a mean over the batch:

* subset ELBO: each row's posterior is the product of experts of a random non-empty
  subset of its present modalities (modality dropout that never removes the last one),
  and that posterior reconstructs every present modality, the hidden ones included. One
  draw per row is an unbiased estimate of the mixture-of-subsets objective of MoPoE
  (Sutter et al. 2021), so one decoder pass trains the joint posterior and every subset
  to generate the other modalities. With mixture-of-experts fusion the subset is a single
  modality, as in MMVAE.
* alignment: a symmetric InfoNCE loss between the posterior means of two modalities of
  the same record (van den Oord et al. 2018), which pulls paired experts together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from .fusion import Experts, product_of_experts
from .modality import ModalityBatch
from .model import MultimodalVAE
from .posterior import DiagonalGaussian


@dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of the loss parts at one training step."""

    beta: float  # KL weight after warm-up at this step
    alignment_weight: float
    alignment_temperature: float
    modality_dropout: float  # probability of hiding each present modality from the joint posterior


@dataclass
class LossTerms:
    """The scalar loss and its named parts, for logging and non-finite checks."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


def compute_loss(
    model: MultimodalVAE,
    batch: Mapping[str, ModalityBatch],
    weights: ObjectiveWeights,
    generator: torch.Generator | None = None,
) -> LossTerms:
    """Return the loss of one batch; terms are named ``nll/<field>``, ``kl`` and ``alignment``."""
    terms: dict[str, torch.Tensor] = {}
    experts = model.encode_experts(batch)

    # 1. ELBO of the product of a random subset of the present experts.
    if model.config.fusion == "moe":
        keep = random_subset(experts.present, generator, max_size=1)
    else:
        keep = drop_modalities(experts.present, weights.modality_dropout, generator)
    posterior = product_of_experts(experts.subset(keep))
    total = _elbo(model, posterior, batch, weights.beta, terms, generator)

    # 2. Alignment of paired experts.
    if weights.alignment_weight > 0:
        alignment = alignment_loss(experts, weights.alignment_temperature)
        terms["alignment"] = alignment
        total = total + weights.alignment_weight * alignment

    return LossTerms(total, terms)


def drop_modalities(present: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hide each present modality from the posterior with ``probability``, never the last one in a row.

    Returns the kept mask (B, M); rows where every present modality was dropped get one of
    them back, chosen uniformly.
    """
    if probability <= 0:
        return present.clone()
    noise = torch.rand(present.shape, generator=generator, device=present.device)
    keep = present & (noise >= probability)
    emptied = present.any(dim=1) & ~keep.any(dim=1)
    if emptied.any():
        # Restore the present modality with the highest random score in each emptied row.
        scores = torch.rand(present.shape, generator=generator, device=present.device).masked_fill(~present, -1.0)
        restored = F.one_hot(scores.argmax(dim=1), present.shape[1]).bool()
        keep = torch.where(emptied.unsqueeze(1), restored, keep)
    return keep


def random_subset(present: torch.Tensor, generator: torch.Generator | None = None, max_size: int | None = None) -> torch.Tensor:
    """Choose a random non-empty subset of the present modalities in each row, (B, M) bool.

    The subset size is uniform between one and the number present (capped at ``max_size``),
    then the members are uniform among the present modalities. Rows with nothing present
    get an empty subset.
    """
    count = present.sum(dim=1)  # (B,)
    limit = count if max_size is None else count.clamp(max=max_size)
    size = (torch.rand(count.shape, generator=generator, device=present.device) * limit).floor().long() + 1
    size = torch.minimum(size, count)
    scores = torch.rand(present.shape, generator=generator, device=present.device).masked_fill(~present, 2.0)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # rank of each entry among its row, present ones first
    return present & (ranks < size.unsqueeze(1))


def alignment_loss(experts: Experts, temperature: float) -> torch.Tensor:
    """Mean symmetric InfoNCE between the means of every pair of modalities.

    For a pair, the rows where both are present form the batch; matching rows are the
    positives and the other rows the negatives. Pairs with fewer than two such rows are
    skipped; with no usable pair the loss is zero.
    """
    losses = []
    normalised = F.normalize(experts.mean, dim=-1)  # (B, M, D)
    for first, second in itertools.combinations(range(len(experts.names)), 2):
        rows = (experts.present[:, first] & experts.present[:, second]).nonzero(as_tuple=True)[0]
        if rows.numel() < 2:
            continue
        logits = normalised[rows, first] @ normalised[rows, second].T / temperature  # (R, R)
        targets = torch.arange(rows.numel(), device=logits.device)
        losses.append(0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)))
    if not losses:
        return experts.mean.sum() * 0.0
    return torch.stack(losses).mean()


def _elbo(
    model: MultimodalVAE,
    posterior: DiagonalGaussian,
    batch: Mapping[str, ModalityBatch],
    beta: float,
    terms: dict[str, torch.Tensor],
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Negative ELBO averaged over the batch; records each modality's NLL and the KL in ``terms``."""
    latents = posterior.sample(generator)
    log_likelihoods = model.log_likelihoods(latents, batch)
    loss = torch.zeros((), device=latents.device)
    for field, values in log_likelihoods.items():
        nll = -values.mean()
        terms[f"nll/{field}"] = nll
        loss = loss + model.modalities[field].config.likelihood_weight * nll
    kl = posterior.kl().mean()
    terms["kl"] = kl
    return loss + beta * kl
