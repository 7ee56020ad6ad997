"""Classification from the shared latent for every subset of modalities.

For each non-empty subset of the evaluated fields this fits a linear probe and a k-NN vote
on the training latents of that subset and scores the test latents of the same subset. It
also scores every subset with the one probe fitted on the clean fused latents of all
fields, which measures how well the joint latent tolerates missing modalities.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..encoding import EncodeOutput, encode_prepared
from .probe import ProbeResult, fit_linear_probe, knn_accuracy

if TYPE_CHECKING:
    from ..data.dataset import PreparedDataset
    from ..model import MultimodalVAE

logger = logging.getLogger(__name__)


@dataclass
class SubsetScores:
    """Test accuracies of one subset of modalities, each in [0, 1]."""

    fields: tuple[str, ...]
    probe: float  # logistic regression fitted on this subset's training latents
    knn: float  # k-NN vote against this subset's training latents
    fused_probe: float  # the probe fitted on all fields' clean training latents, applied to this subset


@dataclass
class ClassificationReport:
    """Accuracies for every subset, keyed by names such as ``"image+audio"``."""

    fields: tuple[str, ...]
    subsets: dict[str, SubsetScores] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {name: {"probe": s.probe, "knn": s.knn, "fused_probe": s.fused_probe} for name, s in self.subsets.items()}


def subset_name(fields: Iterable[str]) -> str:
    return "+".join(fields)


def all_subsets(fields: Sequence[str]) -> list[tuple[str, ...]]:
    """Return every non-empty subset of ``fields``, largest first, in field order within a size."""
    return [subset for size in range(len(fields), 0, -1) for subset in itertools.combinations(fields, size)]


def fit_fused_probe(model: MultimodalVAE, train: PreparedDataset, fields: Sequence[str]) -> ProbeResult:
    """Fit the probe on the fused training latents of all ``fields``."""
    latents = encode_prepared(model, train, fields)
    return fit_linear_probe(latents.mean, _labels(latents))


def evaluate_classification(
    model: MultimodalVAE,
    train: PreparedDataset,
    test: PreparedDataset,
    fields: Sequence[str] | None = None,
    *,
    k: int = 5,
) -> ClassificationReport:
    """Score every subset of ``fields`` (default: all model fields) on labelled data."""
    fields = tuple(fields or model.fields)
    fused = fit_fused_probe(model, train, fields)
    report = ClassificationReport(fields)
    for subset in all_subsets(fields):
        train_latents = encode_prepared(model, train, subset)
        test_latents = encode_prepared(model, test, subset)
        labels = _labels(test_latents)
        probe = fit_linear_probe(train_latents.mean, _labels(train_latents), test_latents.mean, labels)
        knn = knn_accuracy(train_latents.mean, _labels(train_latents), test_latents.mean, labels, k=k)
        fused_accuracy = float(np.mean(fused.model.predict(test_latents.mean) == labels))
        report.subsets[subset_name(subset)] = SubsetScores(subset, probe.accuracy, knn, fused_accuracy)
        logger.info("%s: probe %.4f, knn %.4f, fused probe %.4f", subset_name(subset), probe.accuracy, knn, fused_accuracy)
    return report


def _labels(latents: EncodeOutput) -> np.ndarray:
    if any(label is None for label in latents.labels):
        missing = next(i for i, label in enumerate(latents.labels) if label is None)
        raise ValueError(f"record '{latents.ids[missing]}' has no label; classification needs a 'label' on every record")
    return np.asarray(latents.labels)
