"""Robustness of classification from the joint latent to missing and corrupted modalities.

One probe is fitted on the clean fused training latents of all fields. It then scores the
test latents when each modality is missing, when any k of the N modalities are missing,
and when one modality is corrupted at increasing levels (each modality plugin defines its
corruption kinds and levels), giving accuracy curves.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..data.dataset import PreparedDataset
from ..encoding import encode_prepared
from .classification import fit_fused_probe, subset_name

if TYPE_CHECKING:
    from ..model import MultimodalVAE

logger = logging.getLogger(__name__)


@dataclass
class CorruptionCurve:
    """Fused-probe accuracy as one modality is corrupted at increasing levels."""

    field: str
    kind: str
    levels: list[float]
    accuracy: list[float]


@dataclass
class RobustnessReport:
    """Accuracies of the fused probe under missing and corrupted modalities, each in [0, 1]."""

    clean: float  # every field present and clean
    missing_one: dict[str, float] = field(default_factory=dict)  # field missing -> accuracy
    missing_k: dict[int, float] = field(default_factory=dict)  # k missing -> mean accuracy over the subsets left
    corruptions: list[CorruptionCurve] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "clean": self.clean,
            "missing_one": self.missing_one,
            "missing_k": {str(k): v for k, v in self.missing_k.items()},
            "corruptions": [curve.__dict__ for curve in self.corruptions],
        }


def corrupt_dataset(dataset: PreparedDataset, modality, kind: str, level: float, seed: int = 0) -> PreparedDataset:
    """Return a copy of ``dataset`` whose ``modality.field`` items are corrupted; other fields are shared."""
    generator = torch.Generator().manual_seed(seed)
    items = dict(dataset.items)
    items[modality.field] = [None if item is None else modality.corrupt(item, kind, level, generator) for item in dataset.items[modality.field]]
    return PreparedDataset(dataset.records, items, dataset.skipped)


def evaluate_robustness(
    model: MultimodalVAE,
    train: PreparedDataset,
    test: PreparedDataset,
    fields: Sequence[str] | None = None,
    *,
    corruption_levels: dict[str, dict[str, Sequence[float]]] | None = None,
    seed: int = 0,
) -> RobustnessReport:
    """Measure the fused probe's accuracy under missing and corrupted modalities.

    ``corruption_levels`` maps field to kind to levels; by default each modality's own
    :attr:`~polyfuse.Modality.corruptions` are swept.
    """
    fields = tuple(fields or model.fields)
    probe = fit_fused_probe(model, train, fields).model
    labels = np.asarray(test.labels)

    def accuracy(dataset: PreparedDataset, subset: Sequence[str]) -> float:
        latents = encode_prepared(model, dataset, subset)
        return float(np.mean(probe.predict(latents.mean) == labels))

    report = RobustnessReport(clean=accuracy(test, fields))
    for missing in fields:
        report.missing_one[missing] = accuracy(test, [f for f in fields if f != missing])
    for count in range(1, len(fields)):
        kept = list(itertools.combinations(fields, len(fields) - count))
        report.missing_k[count] = float(np.mean([accuracy(test, subset) for subset in kept]))

    levels = corruption_levels or {f: dict(model.modalities[f].corruptions) for f in fields}
    for corrupted_field, kinds in levels.items():
        modality = model.modalities[corrupted_field]
        for kind, kind_levels in kinds.items():
            scores = [accuracy(corrupt_dataset(test, modality, kind, level, seed), fields) for level in kind_levels]
            report.corruptions.append(CorruptionCurve(corrupted_field, kind, list(map(float, kind_levels)), scores))
            logger.info("%s %s: %s", corrupted_field, kind, ", ".join(f"{l}: {a:.4f}" for l, a in zip(kind_levels, scores)))
    logger.info("Robustness of %s: clean %.4f, missing one %s", subset_name(fields), report.clean, report.missing_one)
    return report
