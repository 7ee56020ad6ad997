"""Training data of generators: every modality's posterior (expert) per record, and the training pairs drawn from them.

A data set is encoded once, with the model in evaluation mode. Each training step then
draws, per record, a target latent from the posterior of all its present modalities and a
condition from the fused posterior of a random subset of them (or of none).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..data.dataset import PreparedDataset
from ..fusion import Experts, fuse, product_of_experts
from ..model import MultimodalVAE
from ..objective import random_subset
from ..progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class LatentBatch:
    """The experts of a batch of records and the fusion method of the model that encoded them."""

    experts: Experts  # mean and logvar (B, M, D), present (B, M)
    fusion: str  # "poe", "moe" or "mopoe"

    @property
    def batch_size(self) -> int:
        return int(self.experts.present.shape[0])


@dataclass
class LatentDataset:
    """The experts of every record that has at least one modality, on the CPU."""

    experts: Experts  # mean and logvar (N, M, D), present (N, M)
    labels: list[Any]  # one label per record, None where the manifest has none
    fusion: str  # fusion method of the model, used to fuse condition subsets

    def __len__(self) -> int:
        return int(self.experts.present.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.experts.mean.shape[-1])

    def batch(self, indices: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu") -> LatentBatch:
        index = torch.as_tensor(indices, dtype=torch.long)
        experts = Experts(
            self.experts.mean[index].to(device),
            self.experts.logvar[index].to(device),
            self.experts.present[index].to(device),
            self.experts.names,
        )
        return LatentBatch(experts, self.fusion)


@dataclass
class TrainingPairs:
    """Targets and conditions of one training batch."""

    targets: torch.Tensor  # (B, D) latents to learn to generate
    condition_mean: torch.Tensor  # (B, D) mean of the fused posterior of the condition subset
    condition_logvar: torch.Tensor  # (B, D) log-variance of that posterior
    unconditional: torch.Tensor  # (B,) bool, True where the condition was dropped


@torch.no_grad()
def encode_latent_dataset(
    model: MultimodalVAE,
    dataset: PreparedDataset,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> LatentDataset:
    """Run every encoder of ``model`` over ``dataset`` and keep the experts of records that have a modality.

    Fields of ``dataset`` that the model lacks raise ``ValueError``. Records with no
    modality at all are left out, because they carry no latent to learn from.
    """
    model.check_fields(dataset.items)
    if device is not None:
        model.to(device)
    was_training = model.training
    model.eval()
    means, logvars, presents = [], [], []
    starts = range(0, len(dataset), batch_size)
    for start in progress_bar(starts, desc="Encoding latents", unit="batch", disable=not progress):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        batch = dataset.batch(indices, {name: model.modalities[name] for name in dataset.items})
        experts = model.encode_experts(batch)
        means.append(experts.mean.cpu())
        logvars.append(experts.logvar.cpu())
        presents.append(experts.present.cpu())
    model.train(was_training)
    if not means:
        raise ValueError("the data set is empty; check the manifest and the fields of the model")
    experts = Experts(torch.cat(means), torch.cat(logvars), torch.cat(presents), model.fields)

    keep = experts.present.any(dim=1)
    if not bool(keep.any()):
        raise ValueError(f"no record contains any of the model's fields ({', '.join(model.fields)}); check the manifest")
    dropped = int((~keep).sum())
    if dropped:
        logger.info("Left out %d record(s) with none of the fields %s", dropped, ", ".join(model.fields))
    labels = [label for label, kept in zip(dataset.labels, keep.tolist()) if kept]
    experts = Experts(experts.mean[keep], experts.logvar[keep], experts.present[keep], experts.names)
    logger.info("Encoded %d records into latents of dimension %d", len(labels), model.latent_dim)
    return LatentDataset(experts, labels, model.config.fusion)


def make_training_pairs(
    batch: LatentBatch,
    condition_dropout: float,
    generator: torch.Generator,
    *,
    sample_targets: bool = True,
) -> TrainingPairs:
    """Draw targets and conditions for one batch.

    The target posterior is the product of all present experts of a record, the posterior
    that the VAE objective trains its decoders on when every modality is kept. With
    ``sample_targets`` the target is one draw from it, else its mean. The condition is the
    fused posterior of a random non-empty subset of the present modalities (uniform size,
    then uniform members), replaced by "no condition" with probability ``condition_dropout``
    so that one network also learns the unconditional distribution for classifier-free
    guidance.
    """
    experts = batch.experts
    target_posterior = product_of_experts(experts)
    targets = target_posterior.sample(generator) if sample_targets else target_posterior.mean

    keep = random_subset(experts.present, generator)
    device = experts.present.device
    dropped = torch.rand(batch.batch_size, generator=generator, device=device) < condition_dropout
    keep = keep & ~dropped.unsqueeze(1)  # (B,) -> (B, 1), broadcast over modalities
    condition = fuse(experts.subset(keep), batch.fusion)
    return TrainingPairs(targets, condition.mean, condition.logvar, ~keep.any(dim=1))
