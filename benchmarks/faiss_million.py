"""Benchmark: the automatically chosen FAISS index on 1,000,000 latent-like vectors of dimension 64.

The vectors stand in for posterior means of a trained model: a hierarchical Gaussian mixture
with 100 classes (content, such as a digit) of 100 sub-modes (style) each. Class means are
drawn from N(0, I). A sub-mode mean is its class mean plus N(0, 0.35^2 I). A vector is its
sub-mode mean plus Gaussian noise, with a per-dimension standard deviation that is fixed per
sub-mode and drawn log-uniformly from [0.2, 0.6]. The run reports how many of each query's
exact 10 nearest neighbours share its class and its sub-mode. Queries are fresh draws, never
indexed vectors: 1,000 tune the search parameter and 10,000 are measured.

Measures build time, bytes per vector on disk, queries per second in batches and one at a
time, and recall@10 against exact search (cosine), all in one run on the same threads.

    python benchmarks/faiss_million.py --threads 2 --out runs/faiss-million.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 100
MODES_PER_CLASS = 100
MODE_SPREAD = 0.35  # standard deviation of sub-mode means around their class mean
STD_RANGE = (0.2, 0.6)  # range of the per-dimension noise standard deviation of a sub-mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="indexed vectors")
    parser.add_argument("--dim", type=int, default=64, help="vector dimension")
    parser.add_argument("--queries", type=int, default=10_000, help="measured queries (batched search)")
    parser.add_argument("--single-queries", type=int, default=1_000, help="queries searched one at a time")
    parser.add_argument("--exact-queries", type=int, default=1_000, help="queries timed on exact search (its recall truth uses all)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads")
    parser.add_argument("--index-spec", help="FAISS factory string instead of the automatic choice")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    import faiss

    from polyfuse.retrieval import VectorIndex, VectorIndexConfig, choose_index_spec, tune_search_parameter
    from polyfuse.retrieval.tuning import recall_at_k

    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()

    # 1. Data: indexed vectors, tuning queries and measured queries from one mixture.
    rng = np.random.default_rng(args.seed)
    mixture = Mixture(rng, args.dim)
    database, database_modes = mixture.sample(args.count)
    tuning_queries, _ = mixture.sample(1_000)
    queries, query_modes = mixture.sample(args.queries)
    ids = np.arange(args.count, dtype=np.int64)

    # 2. Exact search: the recall truth for every measured query, and its speed.
    exact = faiss.IndexFlatIP(args.dim)
    normalised = normalise(database)
    exact.add(normalised)
    exact_seconds, _ = timed(lambda: exact.search(normalise(queries[: args.exact_queries]), 10))
    exact_qps = args.exact_queries / exact_seconds
    _, truth = exact.search(normalise(queries), 10)
    same_mode = float(np.mean(database_modes[truth] == query_modes[:, None]))
    same_class = float(np.mean(database_modes[truth] // MODES_PER_CLASS == (query_modes // MODES_PER_CLASS)[:, None]))
    exact_single_seconds, _ = timed(lambda: [exact.search(normalise(queries[i : i + 1]), 10) for i in range(min(100, args.single_queries))])
    exact_single_qps = min(100, args.single_queries) / exact_single_seconds
    del exact, normalised

    # 3. The automatically chosen index: build, tune with unseen queries, save.
    spec = choose_index_spec(args.count, args.dim, factory=args.index_spec)
    index = VectorIndex.create(VectorIndexConfig(args.dim, spec.factory, "cosine"))
    build_seconds, _ = timed(lambda: (index.train(database, seed=args.seed), index.add(database, ids)))
    tuning = tune_search_parameter(index, database, ids, tuning_queries, target_recall=args.target_recall, query_source="fresh mixture draws")
    with tempfile.TemporaryDirectory() as folder:
        path = index.save(Path(folder) / "million.faiss")
        bytes_per_vector = path.stat().st_size / args.count
        load_seconds, _ = timed(lambda: VectorIndex.load(path))

    # 4. Approximate search on the measured queries.
    approx_seconds, found = timed(lambda: index.search(queries, 10))
    approx_qps = len(queries) / approx_seconds
    approx_single_seconds, _ = timed(lambda: [index.search(queries[i : i + 1], 10) for i in range(args.single_queries)])
    approx_single_qps = args.single_queries / approx_single_seconds
    recall = recall_at_k(found.ids, ids[truth])

    report = {
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, FAISS {faiss.__version__} with {args.threads} OpenMP threads",
        "vectors": args.count,
        "dim": args.dim,
        "data": (
            f"hierarchical Gaussian mixture: {CLASSES} classes x {MODES_PER_CLASS} sub-modes, sub-mode spread {MODE_SPREAD}, "
            f"per-dimension noise std log-uniform in {STD_RANGE}"
        ),
        "exact_neighbours_same_sub_mode": round(same_mode, 3),
        "exact_neighbours_same_class": round(same_class, 3),
        "factory": spec.factory,
        "reason": spec.reason,
        "search_parameters": index.search_parameters,
        "tuning": tuning.to_dict() if tuning else None,
        "build_seconds": round(build_seconds, 1),
        "load_seconds": round(load_seconds, 2),
        "bytes_per_vector": round(bytes_per_vector, 1),
        "recall_at_10": round(recall, 4),
        "qps_batched": round(approx_qps),
        "exact_qps_batched": round(exact_qps),
        "speedup_batched": round(approx_qps / exact_qps, 1),
        "qps_single": round(approx_single_qps),
        "exact_qps_single": round(exact_single_qps),
        "speedup_single": round(approx_single_qps / exact_single_qps, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


class Mixture:
    """The hierarchical Gaussian mixture described in the module docstring."""

    def __init__(self, rng: np.random.Generator, dim: int):
        self.rng = rng
        class_means = rng.normal(size=(CLASSES, dim))
        spread = MODE_SPREAD * rng.normal(size=(CLASSES * MODES_PER_CLASS, dim))
        self.means = (np.repeat(class_means, MODES_PER_CLASS, axis=0) + spread).astype(np.float32)  # (C * M, dim)
        low, high = np.log(STD_RANGE[0]), np.log(STD_RANGE[1])
        self.stds = np.exp(rng.uniform(low, high, size=self.means.shape)).astype(np.float32)

    def sample(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``count`` vectors (count, dim) and the sub-mode each was drawn from (count,)."""
        modes = self.rng.integers(0, len(self.means), size=count)
        noise = self.rng.normal(size=(count, self.means.shape[1])).astype(np.float32)
        return self.means[modes] + self.stds[modes] * noise, modes


def normalise(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)


def timed(function):
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


if __name__ == "__main__":
    main()
