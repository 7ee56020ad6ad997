"""Supervised baselines that the joint latent is compared with, trained on the same data.

* unimodal: one classifier per modality (its encoder backbone plus a linear head);
* late fusion: the average of the unimodal classifiers' class probabilities over the
  modalities a record has;
* early fusion: one network over the concatenated backbone features of all modalities,
  with zeros and a presence flag for a missing modality. It is trained with the same
  modality dropout as the VAE, so it has seen records with modalities missing.

All are scored on every subset of modalities, so they can be set against the fused probe
under missing modalities.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import PreparedDataset
from ..modality import Modality, ModalityBatch
from .classification import all_subsets, subset_name
from .classifiers import ClassifierConfig, ModalityClassifier, train_classifier

logger = logging.getLogger(__name__)


@dataclass
class BaselineReport:
    """Test accuracy of each baseline per subset of modalities, each in [0, 1]."""

    unimodal: dict[str, float] = field(default_factory=dict)  # field -> accuracy of its own classifier
    late_fusion: dict[str, float] = field(default_factory=dict)  # subset name -> accuracy
    early_fusion: dict[str, float] = field(default_factory=dict)  # subset name -> accuracy

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"unimodal": self.unimodal, "late_fusion": self.late_fusion, "early_fusion": self.early_fusion}


class EarlyFusionClassifier(nn.Module):
    """Concatenated backbone features of every field, a presence flag per field, then an MLP."""

    def __init__(self, modalities: Mapping[str, Modality], classes: Sequence[Any], hidden: int = 256):
        super().__init__()
        self.fields = tuple(modalities)
        self.classes = list(classes)
        self.backbones = nn.ModuleDict({name: modality.build_encoder(1).backbone for name, modality in modalities.items()})
        width = sum(modality.config.feature_dim for modality in modalities.values()) + len(self.fields)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, len(self.classes)))
        self.feature_dims = {name: modality.config.feature_dim for name, modality in modalities.items()}

    def forward(
        self,
        batch: Mapping[str, ModalityBatch],
        fields: Sequence[str] | None = None,
        keep: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Return class logits (B, classes); fields outside ``fields``, and rows where ``keep[field]`` is False, count as missing."""
        used = set(self.fields if fields is None else fields)
        size = next(iter(batch.values())).batch_size
        parts, flags = [], []
        for name in self.fields:
            features = torch.zeros(size, self.feature_dims[name])
            present = batch[name].present if name in used else torch.zeros(size, dtype=torch.bool)
            if keep is not None:
                present = present & keep[name]
            rows = present.nonzero(as_tuple=True)[0]
            if rows.numel():
                selected = batch[name].select(rows)
                features = features.index_put((rows,), self.backbones[name](selected.data, selected.lengths))
            parts.append(features)
            flags.append(present.float().unsqueeze(1))  # (B,) -> (B, 1)
        return self.head(torch.cat(parts + flags, dim=1))


def train_early_fusion(
    modalities: Mapping[str, Modality],
    dataset: PreparedDataset,
    config: ClassifierConfig,
    modality_dropout: float = 0.5,
) -> EarlyFusionClassifier:
    """Train the early-fusion network on the labelled records of ``dataset``.

    Each present modality of a training record is hidden with probability
    ``modality_dropout``, never the record's last one, as the VAE's training does.
    """
    labels = dataset.labels
    classes = sorted(set(labels), key=lambda label: (str(type(label)), label))
    targets = torch.tensor([classes.index(label) for label in labels])
    torch.manual_seed(config.seed)
    network = EarlyFusionClassifier(modalities, classes)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    random = torch.Generator().manual_seed(config.seed)
    steps = math.ceil(len(dataset) / config.batch_size)
    network.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        for step in range(steps):
            rows = order[step * config.batch_size : (step + 1) * config.batch_size].tolist()
            batch = dataset.batch(rows, modalities)
            if config.augment:
                batch = {name: modalities[name].augment(value, random) for name, value in batch.items()}
            keep = _dropout_mask(batch, network.fields, modality_dropout, random)
            loss = F.cross_entropy(network(batch, keep=keep), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    network.eval()
    return network


def evaluate_baselines(
    modalities: Mapping[str, Modality],
    train: PreparedDataset,
    test: PreparedDataset,
    config: ClassifierConfig = ClassifierConfig(),
    *,
    batch_size: int = 256,
) -> BaselineReport:
    """Train every baseline on ``train`` with the same budget and score each subset on ``test``."""
    fields = tuple(modalities)
    report = BaselineReport()

    # 1. Unimodal classifiers, which late fusion averages.
    classifiers: dict[str, ModalityClassifier] = {name: train_classifier(modalities[name], train, config).classifier for name in fields}
    probabilities = {name: _probabilities(classifiers[name], test, batch_size) for name in fields}
    classes = classifiers[fields[0]].classes
    labels = np.asarray([classes.index(label) for label in test.labels])
    for name in fields:
        report.unimodal[name] = float(np.mean(probabilities[name].argmax(1) == labels))

    # 2. Early fusion, trained once with modality dropout.
    early = train_early_fusion(modalities, train, config)
    with torch.no_grad():
        for subset in all_subsets(fields):
            late = np.mean([probabilities[name] for name in subset], axis=0)
            report.late_fusion[subset_name(subset)] = float(np.mean(late.argmax(1) == labels))
            logits = torch.cat([early(test.batch(list(range(s, min(s + batch_size, len(test)))), modalities), subset) for s in range(0, len(test), batch_size)])
            report.early_fusion[subset_name(subset)] = float(np.mean(logits.argmax(1).numpy() == labels))
    logger.info("Baselines: unimodal %s, late %s, early %s", report.unimodal, report.late_fusion, report.early_fusion)
    return report


def _dropout_mask(batch: Mapping[str, ModalityBatch], fields: Sequence[str], rate: float, random: torch.Generator) -> dict[str, torch.Tensor]:
    """Return per field a (B,) mask that hides each present value with probability ``rate`` and keeps at least one per row."""
    present = torch.stack([batch[name].present for name in fields], dim=1)  # (B, F)
    keep = present & (torch.rand(present.shape, generator=random) >= rate)
    empty = ~keep.any(dim=1) & present.any(dim=1)
    if empty.any():
        # Restore one present field, chosen at random, in rows that lost every field.
        scores = torch.rand(present.shape, generator=random).masked_fill(~present, -1.0)
        chosen = F.one_hot(scores.argmax(dim=1), len(fields)).bool()
        keep = keep | (chosen & empty.unsqueeze(1))
    return {name: keep[:, index] for index, name in enumerate(fields)}


@torch.no_grad()
def _probabilities(classifier: ModalityClassifier, dataset: PreparedDataset, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) of every record; records without the field get uniform ones."""
    name = classifier.field
    classifier.eval()
    result = np.full((len(dataset), len(classifier.classes)), 1.0 / len(classifier.classes))
    rows = [i for i, item in enumerate(dataset.items[name]) if item is not None]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = classifier.modality.collate([dataset.items[name][i] for i in chunk])
        result[chunk] = F.softmax(classifier(batch), dim=1).numpy()
    return result
