"""One FAISS index over int64 ids: the metric, add and remove after the build, search and persistence.

Cosine similarity is the inner product of L2-normalised vectors. Ids are int64 values >= 0
that the caller chooses, because FAISS returns -1 for "no result".
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._faiss import current_search_parameter, gpu_count, import_faiss, kind_of_index, stored_ids
from .index_files import IndexSettings, VectorIndexConfig, read_index_files, write_index_files
from .spec import check_factory

logger = logging.getLogger(__name__)

SEARCH_PARAMETER_NAMES = {"ivf": "nprobe", "hnsw": "efSearch"}  # the FAISS ParameterSpace names
MAX_EF_SEARCH = 4096  # HNSW candidates beyond this cost more than scanning most indexes exhaustively
# FAISS k-means warns below 39 training points per centroid and subsamples above 256. Training
# on 64 per centroid keeps large list counts affordable: 4096 lists train on 262,144 points.
TRAINING_POINTS_PER_CENTROID = 64


@dataclass
class SearchOutput:
    """Nearest neighbours of Q queries, best first.

    ``distances`` (Q, K) are FAISS distances: inner products for cosine (higher is closer),
    squared Euclidean distances for l2 (lower is closer). ``ids`` (Q, K) are int64, with -1
    (and an undefined distance) where fewer than K results were found.
    """

    distances: np.ndarray
    ids: np.ndarray

    def row(self, query: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the ids and distances of one query without the -1 padding."""
        found = self.ids[query] >= 0
        return self.ids[query][found], self.distances[query][found]


class VectorIndex:
    """A FAISS index plus the bookkeeping that lets ids be added and removed after the build.

    The index kind (see :func:`polyfuse.retrieval._faiss.kind_of_index`) decides how ids work.
    IVF indexes store ids in their inverted lists and remove them in place. Exhaustive
    indexes (Flat, PQ, SQ) sit inside ``IndexIDMap2``, which removes in place too. Graph
    indexes such as HNSW cannot remove, so removed ids are kept in a set and excluded at
    search time: HNSW takes an ``IDSelector``, other graphs fetch extra results.
    """

    def __init__(self, config: VectorIndexConfig, index: Any, *, removed: np.ndarray | None = None, search_parameters: dict | None = None):
        self.config = config
        self._index = index
        self.kind = kind_of_index(index)
        self._removed = np.unique(np.asarray(removed if removed is not None else [], dtype=np.int64))
        self._ids = np.setdiff1d(stored_ids(index, self.kind), self._removed)
        self._search_parameters: dict[str, int] = {}
        self._mmap_source: Path | None = None
        self._gpu_index: Any = None
        self._selector: Any = None
        name = self.search_parameter_name
        if name is not None:
            self._search_parameters[name] = current_search_parameter(index, self.kind)
        for name, value in (search_parameters or {}).items():
            self.set_search_parameter(value, name)

    # -- construction --------------------------------------------------------

    @classmethod
    def create(cls, config: VectorIndexConfig) -> VectorIndex:
        """Create an empty index from ``config.factory``. IVF and PQ types need :meth:`train` before :meth:`add`."""
        faiss = import_faiss()
        metric = faiss.METRIC_INNER_PRODUCT if config.metric == "cosine" else faiss.METRIC_L2
        check_factory(config.factory, config.dim)
        index = faiss.index_factory(config.dim, config.factory, metric)
        if kind_of_index(index) != "ivf":
            index = faiss.IndexIDMap2(index)
        return cls(config, index)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def metric(self) -> str:
        return self.config.metric

    @property
    def ntotal(self) -> int:
        """Number of searchable vectors (removed ones excluded)."""
        return int(self._ids.size)

    @property
    def ids(self) -> np.ndarray:
        """Sorted ids of the searchable vectors (a copy)."""
        return self._ids.copy()

    @property
    def removed_count(self) -> int:
        """Number of removed vectors still stored by a graph index until :meth:`compact`."""
        return int(self._removed.size)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def search_parameters(self) -> dict[str, int]:
        """The search-time settings in use, for example ``{"nprobe": 16}``."""
        return dict(self._search_parameters)

    @property
    def search_parameter_name(self) -> str | None:
        """The FAISS name of the speed/recall setting of this kind ("nprobe", "efSearch"), or None."""
        return SEARCH_PARAMETER_NAMES.get(self.kind)

    @property
    def max_search_parameter(self) -> int | None:
        """The largest useful search parameter: the list count for IVF, a cap on efSearch for HNSW."""
        if self.kind == "ivf":
            return int(import_faiss().extract_index_ivf(self._index).nlist)
        if self.kind == "hnsw":
            return min(MAX_EF_SEARCH, max(1, self.ntotal + self.removed_count))
        return None

    @property
    def faiss_index(self) -> Any:
        """The FAISS index object, for inspection. Change it only through this class, which tracks its ids."""
        return self._index

    # -- building ------------------------------------------------------------

    def train(self, embeddings: np.ndarray, seed: int = 0) -> None:
        """Train the quantizers on ``embeddings`` (N, dim). Indexes that need no training ignore the call.

        IVF indexes train on at most 64 points per list, drawn with ``seed``.
        """
        if self.is_trained:
            return
        faiss = import_faiss()
        vectors = self.prepare_vectors(embeddings, "embeddings")
        if self.kind == "ivf":
            ivf = faiss.extract_index_ivf(self._index)
            if len(vectors) < ivf.nlist:
                raise ValueError(
                    f"IVF index with {ivf.nlist} lists needs at least {ivf.nlist} training vectors, got {len(vectors)}; "
                    f"choose the factory with polyfuse.retrieval.choose_index_spec, which fits the list count to the data"
                )
            limit = TRAINING_POINTS_PER_CENTROID * ivf.nlist
            if len(vectors) > limit:
                rows = np.random.default_rng(seed).choice(len(vectors), limit, replace=False)
                vectors = vectors[np.sort(rows)]
            if gpu_count() > 0:
                # NOTE: not exercised by the test suite, which runs without a GPU. A GPU
                # clustering index is how the FAISS documentation speeds up IVF training.
                ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(ivf.d))
        self._index.train(vectors)
        logger.debug("Trained %s on %d vectors", self.config.factory, len(vectors))

    def add(self, embeddings: np.ndarray, ids: np.ndarray) -> None:
        """Add ``embeddings`` (N, dim) under ``ids`` (N,), which must be new int64 values >= 0."""
        vectors = self.prepare_vectors(embeddings, "embeddings")
        ids = _check_ids(ids, "ids")
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(vectors)} embeddings but {len(ids)} ids; pass one id per embedding")
        if not self.is_trained:
            raise ValueError(f"index {self.config.factory!r} is not trained; call train() with representative embeddings first")
        duplicates = ids[np.isin(ids, self._ids)]
        if duplicates.size:
            raise ValueError(f"ids already in the index: {_preview(duplicates)}; remove them first or use new ids")
        reused = ids[np.isin(ids, self._removed)]
        if reused.size:
            raise ValueError(
                f"ids {_preview(reused)} were removed from this {self.kind} index, which keeps removed vectors until "
                f"compact(); call compact() before reusing them, or use new ids"
            )
        self._make_writable()
        self._index.add_with_ids(vectors, ids)
        self._ids = np.union1d(self._ids, ids)
        self._gpu_index = None

    def remove(self, ids: np.ndarray, missing_ok: bool = False) -> int:
        """Remove ``ids`` and return how many were removed. Unknown ids raise ``ValueError`` unless ``missing_ok``."""
        faiss = import_faiss()
        ids = _check_ids(ids, "ids")
        present = np.isin(ids, self._ids)
        if not missing_ok and not present.all():
            raise ValueError(f"ids not in the index: {_preview(ids[~present])}; pass missing_ok=True to ignore them")
        ids = ids[present]
        if ids.size == 0:
            return 0
        if self.kind in ("ivf", "flat"):
            self._make_writable()
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
        else:
            self._removed = np.union1d(self._removed, ids)
            self._selector = None
        self._ids = np.setdiff1d(self._ids, ids)
        self._gpu_index = None
        return int(ids.size)

    def compact(self) -> None:
        """Rebuild a graph index without its removed vectors. Other kinds remove in place and skip this."""
        if self._removed.size == 0:
            return
        faiss = import_faiss()
        vectors = self._index.reconstruct_batch(self._ids) if self._ids.size else np.zeros((0, self.dim), np.float32)
        rebuilt = VectorIndex.create(self.config)
        if self._ids.size:
            rebuilt._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), self._ids)
        logger.info("Compacted %s: dropped %d removed vectors, kept %d", self.config.factory, self._removed.size, self._ids.size)
        self._index, self._removed, self._gpu_index, self._selector = rebuilt._index, np.zeros(0, np.int64), None, None
        for name, value in self._search_parameters.items():
            faiss.ParameterSpace().set_index_parameter(self._index, name, value)

    def set_search_parameter(self, value: int, name: str | None = None) -> None:
        """Set the speed/recall setting (``nprobe`` for IVF, ``efSearch`` for HNSW) used by :meth:`search`."""
        faiss = import_faiss()
        expected = self.search_parameter_name
        if expected is None:
            raise ValueError(f"a {self.kind} index ({self.config.factory}) has no search parameter to set")
        if name is not None and name != expected:
            raise ValueError(f"a {self.kind} index takes search parameter {expected!r}, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{expected} must be a positive int, got {value!r}")
        faiss.ParameterSpace().set_index_parameter(self._index, expected, int(value))
        self._search_parameters = {expected: int(value)}
        self._gpu_index = None

    # -- search --------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int = 10, *, query_fingerprint: str | None = None) -> SearchOutput:
        """Return the ``k`` nearest searchable vectors of each query, best first.

        ``queries`` is (Q, dim) or (dim,) of any float dtype and memory layout. Fewer than
        ``k`` results are padded with id -1, and the output has min(k, ntotal) columns.
        ``query_fingerprint`` names the model that encoded the queries in a dimension error.
        """
        faiss = import_faiss()
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        vectors = self.prepare_vectors(queries, "queries", fingerprint=query_fingerprint)
        width = min(int(k), self.ntotal)
        if width == 0 or len(vectors) == 0:
            return SearchOutput(np.zeros((len(vectors), width), np.float32), np.full((len(vectors), width), -1, np.int64))

        fetch, params = width, None
        if self._removed.size and self.kind == "hnsw":
            # Removed vectors still take places in the graph's candidate list, so the list grows by
            # the inverse of the searchable share to keep about efSearch searchable candidates.
            stored = self.ntotal + int(self._removed.size)
            ef_search = min(MAX_EF_SEARCH, math.ceil(self._search_parameters["efSearch"] * stored / self.ntotal))
            params = faiss.SearchParametersHNSW(sel=self._removed_selector(), efSearch=max(ef_search, width))
        elif self._removed.size:
            # No selector support: fetch enough extra results to drop every removed id.
            fetch = width + int(self._removed.size)
        distances, ids = self._searcher().search(vectors, fetch, params=params)
        if fetch > width:
            distances, ids = _drop_removed(distances, ids, self._removed, width)
        return SearchOutput(distances, ids)

    def prepare_vectors(self, embeddings: np.ndarray, name: str = "embeddings", fingerprint: str | None = None) -> np.ndarray:
        """Return ``embeddings`` as C-contiguous float32 (N, dim), L2-normalised for cosine."""
        array = np.asarray(embeddings)
        if array.ndim == 1:
            array = array.reshape(1, -1)  # one vector (dim,) -> (1, dim)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{name} must be a numeric (N, {self.dim}) array, got dtype {array.dtype} and shape {array.shape}")
        if array.shape[1] != self.dim:
            source = f"model {fingerprint[:12]}" if fingerprint else "an unknown model"
            built = f"model {self.config.fingerprint[:12]}" if self.config.fingerprint else "an unknown model"
            raise ValueError(
                f"{name} have dimension {array.shape[1]} (from {source}) but the index contains dimension {self.dim} "
                f"vectors (from {built}); encode the {name} with the model that built the index"
            )
        vectors = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(vectors).all():
            rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
            raise ValueError(f"{name} contain NaN or infinite values in rows {_preview(rows)}")
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
            vectors = vectors / np.maximum(norms, np.finfo(np.float32).tiny)
        return vectors

    # -- persistence ---------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the FAISS index to ``path`` and its settings to ``path`` with suffix ``.json``, atomically."""
        settings = IndexSettings(self.config, self.kind, self.ntotal, self.search_parameters, self._removed.tolist())
        return write_index_files(path, self._index, settings, self._mmap_source)

    @classmethod
    def load(cls, path: str | Path, mmap: bool | None = None) -> VectorIndex:
        """Read an index written by :meth:`save`.

        ``mmap`` None memory-maps IVF files of at least 256 MiB and reads others into memory.
        A memory-mapped index is read-only, so the first add or remove reads it into memory.
        """
        index, settings, mapped_from = read_index_files(Path(path), mmap)
        loaded = cls(settings.config, index, removed=np.asarray(settings.removed_ids, np.int64), search_parameters=settings.search_parameters)
        loaded._mmap_source = mapped_from
        logger.debug("Loaded %s (%d vectors, %s)%s", path, loaded.ntotal, settings.config.factory, " memory-mapped" if mapped_from else "")
        return loaded

    def _removed_selector(self) -> Any:
        # Built once per change of the removed set, because FAISS copies the ids into a hash set.
        if self._selector is None:
            faiss = import_faiss()
            excluded = faiss.IDSelectorBatch(self._removed)
            self._selector = faiss.IDSelectorNot(excluded)
            self._selector.referenced_objects = [excluded]  # the Python wrapper must outlive FAISS's pointer
        return self._selector

    def _make_writable(self) -> None:
        if self._mmap_source is None:
            return
        faiss = import_faiss()
        logger.info("Reading %s into memory before changing it (it was memory-mapped)", self._mmap_source)
        self._index = faiss.read_index(str(self._mmap_source))
        for name, value in self._search_parameters.items():
            faiss.ParameterSpace().set_index_parameter(self._index, name, value)
        self._mmap_source = None

    def _searcher(self) -> Any:
        if gpu_count() == 0 or self.kind not in ("flat", "ivf"):
            return self._index
        # NOTE: not exercised by the test suite, which runs without a GPU. The CPU index stays
        # the one that is changed and saved; the GPU copy is rebuilt after every change.
        if self._gpu_index is None:
            faiss = import_faiss()
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
        return self._gpu_index


def _drop_removed(distances: np.ndarray, ids: np.ndarray, removed: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    kept_distances = np.full((len(ids), width), np.nan, np.float32)
    kept_ids = np.full((len(ids), width), -1, np.int64)
    for row in range(len(ids)):
        keep = (ids[row] >= 0) & ~np.isin(ids[row], removed)
        found = ids[row][keep][:width]
        kept_ids[row, : len(found)] = found
        kept_distances[row, : len(found)] = distances[row][keep][:width]
    return kept_distances, kept_ids


def _check_ids(ids: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {array.dtype} and shape {array.shape}")
    array = array.astype(np.int64)
    if (array < 0).any():
        raise ValueError(f"{name} must be >= 0 (FAISS uses -1 for 'no result'), got {_preview(array[array < 0])}")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} contain duplicates: {_preview(unique[counts > 1])}")
    return array


def _preview(values: np.ndarray, limit: int = 5) -> str:
    listed = ", ".join(str(value) for value in np.asarray(values)[:limit].tolist())
    return f"{listed} (and {len(values) - limit} more)" if len(values) > limit else listed
