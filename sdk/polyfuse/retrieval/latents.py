"""Which latent vector represents a record in each target index, and which represents a query.

A record is stored once per modality it has, as that modality's own posterior mean, and
once as the fused posterior mean of all its modalities (target "fused"). A query with one
modality uses that modality's posterior mean, the same vector the index stores for it. A
query with several modalities uses their fused posterior mean, so the model's fusion
(product or mixture of experts) decides how they combine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoding import EncodeOutput
from .store import FUSED


@dataclass
class TargetEmbeddings:
    """The rows of an encode output that have a vector in one target, and those vectors."""

    rows: np.ndarray  # (N,) int64 positions in the encode output
    embeddings: np.ndarray  # (N, D) float32


def target_embeddings(output: EncodeOutput) -> dict[str, TargetEmbeddings]:
    """Return, per target (each field of ``output``, then "fused"), the records it contains and their vectors.

    Records with no field present are left out of "fused", because their fused posterior
    is the prior and says nothing about the record.
    """
    targets: dict[str, TargetEmbeddings] = {}
    for column, name in enumerate(output.fields):
        rows = np.flatnonzero(output.present[:, column])
        targets[name] = TargetEmbeddings(rows, np.asarray(output.modality_means[name][rows], np.float32))
    rows = np.flatnonzero(output.present.any(axis=1))
    targets[FUSED] = TargetEmbeddings(rows, np.asarray(output.mean[rows], np.float32))
    return targets


def query_embeddings(output: EncodeOutput) -> np.ndarray:
    """Return one query vector (N, D) per row of ``output``. Rows without any field raise ``ValueError``."""
    counts = output.present.sum(axis=1)  # (N,) fields present per row
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        names = ", ".join(repr(output.ids[row]) for row in empty[:5])
        raise ValueError(
            f"queries {names} have no value for any of the fields {', '.join(output.fields)}; give each query at least one"
        )
    embeddings = np.array(output.mean, dtype=np.float32, copy=True)
    for column, name in enumerate(output.fields):
        single = (counts == 1) & output.present[:, column]
        embeddings[single] = output.modality_means[name][single]
    return embeddings


def select_rows(output: EncodeOutput, rows: np.ndarray) -> EncodeOutput:
    """Return the rows ``rows`` of an encode output."""
    return EncodeOutput(
        ids=[output.ids[row] for row in rows],
        labels=[output.labels[row] for row in rows] if output.labels else [],
        fields=output.fields,
        mean=output.mean[rows],
        logvar=output.logvar[rows],
        modality_means={name: means[rows] for name, means in output.modality_means.items()},
        present=output.present[rows],
    )
