"""Retrieval quality on labelled records: recall@K and mAP@10 by class label, and instance recall@K.

Each pair is a query modality, or a set of modalities fused into one query, and a target
index. A gallery item is relevant to a query when it has the query's label (class metrics)
or is the query's own record (instance metrics, for records paired one to one).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..data.dataset import prepare_records
from ..data.manifest import read_manifest
from ..encoding import encode_prepared
from .latents import query_embeddings, select_rows

if TYPE_CHECKING:
    from .search import RetrievalIndex

logger = logging.getLogger(__name__)

DEFAULT_K_VALUES = (1, 5, 10)
MAP_K = 10


@dataclass
class PairMetrics:
    """Retrieval quality of one (query modalities, target) pair. Rates are in [0, 1], NaN without queries."""

    query_fields: tuple[str, ...]
    target: str
    queries: int  # queries with a label and at least one relevant gallery item, the ones class metrics average over
    recall: dict[int, float]  # K -> share of queries with a same-label record in the top K
    map_at_k: float  # mean average precision at ``map_k`` by class label (see average_precision_at_k)
    map_k: int
    without_relevant: int  # queries left out of class metrics: no label, or no same-label record in the gallery
    instance_recall: dict[int, float] | None = None  # K -> share of queries whose own record is in the top K
    instance_queries: int = 0  # queries whose own record is in the target, the ones instance recall averages over

    @property
    def name(self) -> str:
        return f"{'+'.join(self.query_fields)} -> {self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": list(self.query_fields),
            "target": self.target,
            "queries": self.queries,
            "recall": {str(k): round(value, 4) for k, value in self.recall.items()},
            f"map_at_{self.map_k}": round(self.map_at_k, 4),
            "without_relevant": self.without_relevant,
            "instance_recall": None if self.instance_recall is None else {str(k): round(v, 4) for k, v in self.instance_recall.items()},
            "instance_queries": self.instance_queries,
        }


@dataclass
class RetrievalReport:
    """Metrics of every evaluated pair, with how they were measured."""

    pairs: list[PairMetrics]
    manifest: str
    index: str
    exclude_self: bool  # whether each query's own record was left out of the gallery
    k_values: tuple[int, ...]
    map_k: int

    def pair(self, query_fields: Sequence[str], target: str) -> PairMetrics:
        """Return the metrics of one pair."""
        for metrics in self.pairs:
            if metrics.query_fields == tuple(query_fields) and metrics.target == target:
                return metrics
        raise KeyError(f"no pair {'+'.join(query_fields)} -> {target}; evaluated: {', '.join(m.name for m in self.pairs)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "index": self.index,
            "exclude_self": self.exclude_self,
            "k_values": list(self.k_values),
            "map_k": self.map_k,
            "pairs": [metrics.to_dict() for metrics in self.pairs],
        }

    def to_text(self) -> str:
        """Return the metrics as a plain-text table, one pair per line."""
        instance = any(metrics.instance_recall is not None for metrics in self.pairs)
        header = ["query -> target", "queries", *(f"R@{k}" for k in self.k_values), f"mAP@{self.map_k}"]
        header += [f"inst R@{k}" for k in self.k_values] if instance else []
        rows = [header]
        for metrics in self.pairs:
            row = [metrics.name, str(metrics.queries), *(f"{metrics.recall[k]:.4f}" for k in self.k_values), f"{metrics.map_at_k:.4f}"]
            if instance:
                row += [f"{metrics.instance_recall[k]:.4f}" if metrics.instance_recall else "-" for k in self.k_values]
            rows.append(row)
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def average_precision_at_k(relevance: np.ndarray, relevant_counts: np.ndarray, k: int = MAP_K) -> np.ndarray:
    """Return AP@k of each query from ``relevance`` (Q, >= k) bool, ranked best first.

    AP@k = (1 / min(R, k)) * sum over i = 1..k of P(i) * rel(i), where rel(i) is 1 when
    the item at rank i is relevant, P(i) is the share of relevant items among the top i,
    and R is the number of relevant items in the whole gallery (``relevant_counts``, (Q,)).
    Capping R at k makes a perfect top k score 1 even when R > k, as in the usual
    retrieval benchmarks. Queries with R = 0 get NaN; leave them out of the mean.
    """
    relevance = np.asarray(relevance, dtype=bool)[:, :k]
    counts = np.asarray(relevant_counts, dtype=np.float64)
    ranks = np.arange(1, relevance.shape[1] + 1)  # (k,)
    precision = np.cumsum(relevance, axis=1) / ranks  # (Q, k) P(i)
    total = (precision * relevance).sum(axis=1)  # (Q,)
    denominator = np.minimum(counts, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, total / denominator, np.nan)


def recall_at_k(relevance: np.ndarray, k: int) -> float:
    """Return the share of queries with at least one relevant item in their top ``k``."""
    relevance = np.asarray(relevance, dtype=bool)
    return float(relevance[:, :k].any(axis=1).mean()) if len(relevance) else float("nan")


def evaluate_retrieval(
    index: RetrievalIndex,
    manifest: str | Path,
    *,
    query_fields: Sequence[Sequence[str]] | None = None,
    targets: Sequence[str] | None = None,
    exclude_self: bool = False,
    paired: bool = False,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    map_k: int = MAP_K,
    batch_size: int = 256,
    skip_invalid: bool = False,
    progress: bool = True,
) -> RetrievalReport:
    """Search ``index`` with every record of ``manifest`` and score each (query modalities, target) pair.

    ``query_fields`` lists the modality sets to query with, by default every non-empty subset
    of the index's fields. A record is a query of a set when it has all of the set's fields.
    ``targets`` defaults to every target of the index. With ``exclude_self`` a query's own
    record (same id) is removed from its results and from its relevant count, so a test
    set indexed as its own gallery measures retrieval of the other records. With
    ``paired`` (records paired one to one) instance recall@K is reported too.
    """
    # 1. Arguments and queries.
    if paired and exclude_self:
        raise ValueError("paired and exclude_self contradict each other: with paired records the query's own record is the only relevant one")
    k_values = tuple(sorted({int(k) for k in k_values}))
    if not k_values or k_values[0] < 1 or map_k < 1:
        raise ValueError(f"k_values and map_k must be positive ints, got {k_values} and {map_k}")
    fields = index.settings.fields
    subsets = [tuple(subset) for subset in query_fields] if query_fields else _all_subsets(fields)
    for subset in subsets:
        index.model.check_fields(subset)
    targets = tuple(targets) if targets else index.targets
    for target in targets:
        index.vector_index(target)
    records = read_manifest(manifest).records
    needed = sorted({name for subset in subsets for name in subset}, key=index.model.fields.index)
    dataset = prepare_records(
        records, {name: index.model.modalities[name] for name in needed}, skip_invalid=skip_invalid, progress=progress
    )
    labels = [_label(record.label) for record in dataset.records]
    if not paired and all(label is None for label in labels):
        raise ValueError(f"{manifest} has no 'label' values, which class metrics need; add labels, or pass paired=True")

    # 2. Every pair: encode the queries once per modality set, then search each target.
    depth = max(max(k_values), map_k) + (1 if exclude_self else 0)
    pairs = []
    for subset in subsets:
        encoded = encode_prepared(index.model, dataset, subset, batch_size=batch_size)
        rows = np.flatnonzero(encoded.present.all(axis=1))
        if rows.size == 0:
            logger.warning("No record of %s has all of %s; skipping those queries", manifest, "+".join(subset))
            continue
        embeddings = query_embeddings(select_rows(encoded, rows))
        query_ids = np.asarray([encoded.ids[row] for row in rows], dtype=object)
        query_labels = [labels[row] for row in rows]
        for target in targets:
            gallery = _Gallery(index, target)
            output = index.indexes[target].search(embeddings, depth, query_fingerprint=index.model.fingerprint)
            pairs.append(_score_pair(subset, target, output.ids, query_ids, query_labels, gallery, exclude_self, paired, k_values, map_k))
    return RetrievalReport(pairs, str(manifest), str(index.folder), exclude_self, k_values, map_k)


class _Gallery:
    """Record ids and labels of the searchable vectors of one target, looked up by vector id."""

    def __init__(self, index: RetrievalIndex, target: str):
        self.keys = index.indexes[target].ids  # sorted
        entries = [index.id_map.entry(key) for key in self.keys.tolist()]
        self.record_ids = np.asarray([entry.record_id for entry in entries], dtype=object)
        self.labels = np.asarray([_label(entry.label) for entry in entries], dtype=object)
        self.label_counts = Counter(label for label in self.labels.tolist() if label is not None)
        self.position_of_id = {record_id: position for position, record_id in enumerate(self.record_ids.tolist())}

    def positions(self, keys: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.keys, keys)


def _score_pair(
    subset: tuple[str, ...],
    target: str,
    retrieved: np.ndarray,
    query_ids: np.ndarray,
    query_labels: list[str | None],
    gallery: _Gallery,
    exclude_self: bool,
    paired: bool,
    k_values: tuple[int, ...],
    map_k: int,
) -> PairMetrics:
    depth = max(max(k_values), map_k)
    class_relevance, instance_relevance, counts = [], [], []
    class_rows, instance_rows = [], []
    for row, keys in enumerate(retrieved):
        keys = keys[keys >= 0]
        record_ids = gallery.record_ids[gallery.positions(keys)]
        own = gallery.position_of_id.get(query_ids[row])
        if exclude_self:
            keep = record_ids != query_ids[row]
            keys, record_ids = keys[keep], record_ids[keep]
        ranked_labels = gallery.labels[gallery.positions(keys)][:depth]
        label = query_labels[row]
        relevant = gallery.label_counts.get(label, 0) if label is not None else 0
        if exclude_self and own is not None and gallery.labels[own] == label:
            relevant -= 1
        if relevant > 0:
            class_relevance.append(_padded(ranked_labels == label, depth))
            counts.append(relevant)
            class_rows.append(row)
        if paired and own is not None:
            instance_relevance.append(_padded(record_ids[:depth] == query_ids[row], depth))
            instance_rows.append(row)

    class_matrix = np.asarray(class_relevance, dtype=bool).reshape(len(class_rows), depth)
    average_precisions = average_precision_at_k(class_matrix, np.asarray(counts), map_k)
    instance = None
    if paired:
        instance_matrix = np.asarray(instance_relevance, dtype=bool).reshape(len(instance_rows), depth)
        instance = {k: recall_at_k(instance_matrix, k) for k in k_values}
    return PairMetrics(
        query_fields=subset,
        target=target,
        queries=len(class_rows),
        recall={k: recall_at_k(class_matrix, k) for k in k_values},
        map_at_k=float(np.mean(average_precisions)) if len(class_rows) else float("nan"),
        map_k=map_k,
        without_relevant=len(retrieved) - len(class_rows),
        instance_recall=instance,
        instance_queries=len(instance_rows),
    )


def _padded(values: np.ndarray, length: int) -> np.ndarray:
    padded = np.zeros(length, dtype=bool)
    padded[: min(length, len(values))] = values[:length]
    return padded


def _label(label: Any) -> str | None:
    # Labels compare as text, so the int 7 and the string "7" are the same class.
    return None if label is None else str(label)


def _all_subsets(fields: Sequence[str]) -> list[tuple[str, ...]]:
    return [subset for size in range(1, len(fields) + 1) for subset in itertools.combinations(fields, size)]
