"""Tuning an approximate index's search parameter (nprobe, efSearch) to a target recall@k.

Recall is measured against exact search over the same vectors, with queries that should
come from another modality than the indexed one. Cross-modal queries fall farther from the
indexed vectors than the vectors themselves do, so they need a larger search budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._faiss import import_faiss
from .vector_index import VectorIndex

logger = logging.getLogger(__name__)

DEFAULT_TARGET_RECALL = 0.95
TUNING_K = 10  # recall@10, a common operating point of nearest-neighbour benchmarks
MAX_TUNING_QUERIES = 1000  # gives a standard error of the mean recall near 0.003 at recall 0.95 (an estimate)
# A value is accepted when its mean recall minus 1.96 standard errors reaches the target. In a
# normal approximation, the mean recall over all queries from the same source then reaches
# the target with about 97.5% confidence.
CONFIDENCE_Z = 1.96


@dataclass
class TuningResult:
    """The search parameter chosen for an index and the recall measured on the way."""

    parameter: str  # "nprobe" (IVF) or "efSearch" (HNSW)
    value: int  # the smallest value measured to reach target_recall, else the largest value tried
    recall: float  # mean recall@k over the tuning queries at ``value``, in [0, 1]
    recall_lower_bound: float  # ``recall`` minus 1.96 standard errors, the figure compared with the target
    target_recall: float  # the recall@k asked for
    reached: bool  # whether ``recall_lower_bound`` >= ``target_recall``
    k: int  # neighbours compared per query
    queries: int  # queries measured
    query_source: str  # where the queries came from, for example "audio, sensor"
    curve: list[tuple[int, float]] = field(default_factory=list)  # every (value, recall) measured, by value

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter,
            "value": self.value,
            "recall": round(self.recall, 4),
            "recall_lower_bound": round(self.recall_lower_bound, 4),
            "target_recall": self.target_recall,
            "reached": self.reached,
            "k": self.k,
            "queries": self.queries,
            "query_source": self.query_source,
            "curve": [[value, round(recall, 4)] for value, recall in self.curve],
        }


def tune_search_parameter(
    index: VectorIndex,
    database: np.ndarray,
    database_ids: np.ndarray,
    queries: np.ndarray,
    *,
    target_recall: float = DEFAULT_TARGET_RECALL,
    k: int = TUNING_K,
    query_source: str = "queries",
    max_queries: int = MAX_TUNING_QUERIES,
    seed: int = 0,
) -> TuningResult | None:
    """Set the smallest search parameter of ``index`` whose recall@k reaches ``target_recall``.

    ``database`` (N, D) with ``database_ids`` (N,) must be exactly the searchable vectors of
    ``index``; exact search over them gives the true neighbours. Up to ``max_queries`` rows
    of ``queries`` are drawn with ``seed``. Recall@k of one query is the share of its true
    k nearest ids that the index returns in its top k. A value reaches the target when the
    mean over queries minus 1.96 standard errors does. Values are tried in doubling steps, then bisected.
    Returns None for an index without a search parameter (exact or other).
    """
    name = index.search_parameter_name
    if name is None:
        return None
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    if len(database) != index.ntotal or len(database_ids) != index.ntotal:
        raise ValueError(
            f"database has {len(database)} vectors and {len(database_ids)} ids but the index contains {index.ntotal}; "
            f"pass exactly the indexed vectors"
        )
    queries = np.asarray(queries)
    if len(queries) == 0:
        raise ValueError("no tuning queries; pass at least one query vector")
    if len(queries) > max_queries:
        queries = queries[np.sort(np.random.default_rng(seed).choice(len(queries), max_queries, replace=False))]

    # 1. True neighbours by exhaustive search.
    k = min(k, index.ntotal)
    truth = exact_neighbours(index, database, database_ids, queries, k)

    # 2. Doubling steps up to the first value that reaches the target, then bisection below it.
    curve: dict[int, float] = {}
    lower_bounds: dict[int, float] = {}

    def reaches(value: int) -> bool:
        if value not in curve:
            index.set_search_parameter(value)
            recalls = per_query_recall(index.search(queries, k).ids, truth)
            curve[value] = float(recalls.mean())
            lower_bounds[value] = curve[value] - CONFIDENCE_Z * float(recalls.std() / np.sqrt(len(recalls)))
        return lower_bounds[value] >= target_recall

    candidates = _doubling(index, k)
    reached_value = next((value for value in candidates if reaches(value)), None)
    if reached_value is None:
        value = candidates[-1]
        logger.warning(
            "%s of %s reaches recall@%d %.3f at its largest tried value %d, below the target %.3f; using %d",
            name, index.config.factory, k, curve[value], value, target_recall, value,
        )
    else:
        low, high = max([c for c in candidates if c < reached_value], default=candidates[0] - 1), reached_value
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if reaches(middle) else (middle, high)
        value = high

    index.set_search_parameter(value)
    result = TuningResult(
        parameter=name,
        value=value,
        recall=curve[value],
        recall_lower_bound=lower_bounds[value],
        target_recall=target_recall,
        reached=bool(lower_bounds[value] >= target_recall),
        k=k,
        queries=len(queries),
        query_source=query_source,
        curve=sorted(curve.items()),
    )
    logger.info(
        "Tuned %s of %s to %d: recall@%d %.3f (target %.3f) on %d queries from %s",
        name, index.config.factory, value, k, result.recall, target_recall, len(queries), query_source,
    )
    return result


def exact_neighbours(index: VectorIndex, database: np.ndarray, database_ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Return the ids (Q, k) of the exact k nearest database vectors under the index's metric."""
    faiss = import_faiss()
    vectors = index.prepare_vectors(database, "database")
    exact = faiss.IndexFlatIP(index.dim) if index.metric == "cosine" else faiss.IndexFlatL2(index.dim)
    exact.add(vectors)
    _, rows = exact.search(index.prepare_vectors(queries, "queries"), k)
    return np.asarray(database_ids, np.int64)[rows]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Return the mean share of each row of ``truth`` (Q, k) that the same row of ``found`` contains."""
    return float(per_query_recall(found, truth).mean()) if len(truth) else 1.0


def per_query_recall(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Return, per query, the share of its true neighbours ``truth`` (Q, k) found in ``found`` (Q, any width).

    Padding ids (-1) in ``found`` never count.
    """
    if truth.shape[1] == 0:
        return np.ones(len(truth))
    hits = [np.intersect1d(found_row[found_row >= 0], truth_row).size for found_row, truth_row in zip(found, truth)]
    return np.asarray(hits, dtype=np.float64) / truth.shape[1]


def _doubling(index: VectorIndex, k: int) -> list[int]:
    """Return the values to try: powers of two from the smallest useful value up to the largest."""
    # HNSW explores max(efSearch, k) candidates, so efSearch below k changes nothing.
    value = 1 if index.search_parameter_name == "nprobe" else k
    limit = index.max_search_parameter
    values = []
    while value < limit:
        values.append(value)
        value *= 2
    return values + [limit]
