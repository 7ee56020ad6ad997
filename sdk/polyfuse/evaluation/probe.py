"""Classification from latents: a logistic-regression probe and k-nearest neighbours.

Both fit on training latents and score test latents, the usual way to measure how much of
the label a representation carries without training the representation on labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class ProbeResult:
    """A fitted probe and its test accuracy."""

    accuracy: float  # share of test rows classified correctly, in [0, 1]
    predictions: np.ndarray  # (N_test,) predicted labels
    model: Any  # the fitted scikit-learn pipeline, to score other latents


def fit_linear_probe(
    train_latents: np.ndarray,
    train_labels: Sequence[Any],
    test_latents: np.ndarray | None = None,
    test_labels: Sequence[Any] | None = None,
    *,
    max_iter: int = 2000,
    regularization: float = 1.0,
) -> ProbeResult:
    """Fit standardisation plus multinomial logistic regression, then score the test split.

    ``regularization`` is scikit-learn's ``C`` (inverse L2 strength). Without test data the
    accuracy is measured on the training rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_rows(train_latents, train_labels, "train")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=regularization))
    model.fit(train_latents, np.asarray(train_labels))
    latents, labels = (train_latents, train_labels) if test_latents is None else (test_latents, test_labels)
    _check_rows(latents, labels, "test")
    predictions = model.predict(latents)
    return ProbeResult(float(np.mean(predictions == np.asarray(labels))), predictions, model)


def knn_accuracy(
    train_latents: np.ndarray,
    train_labels: Sequence[Any],
    test_latents: np.ndarray,
    test_labels: Sequence[Any],
    k: int = 5,
) -> float:
    """Return the accuracy of a k-nearest-neighbour vote with cosine distance."""
    from sklearn.neighbors import KNeighborsClassifier

    _check_rows(train_latents, train_labels, "train")
    _check_rows(test_latents, test_labels, "test")
    classifier = KNeighborsClassifier(n_neighbors=min(k, len(train_latents)), metric="cosine")
    classifier.fit(train_latents, np.asarray(train_labels))
    return float(np.mean(classifier.predict(test_latents) == np.asarray(test_labels)))


def _check_rows(latents: np.ndarray, labels: Sequence[Any] | None, split: str) -> None:
    if labels is None or len(latents) != len(labels):
        count = "no" if labels is None else len(labels)
        raise ValueError(f"{split} latents have {len(latents)} rows but {count} labels; pass one label per row")
    if len(latents) == 0:
        raise ValueError(f"{split} latents are empty; check the manifest and the encoded fields")
