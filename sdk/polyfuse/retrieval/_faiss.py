"""FAISS, imported on first use, and what the retrieval modules need to know about its index objects."""

from __future__ import annotations

from typing import Any

import numpy as np


def import_faiss() -> Any:
    """Return the ``faiss`` module, or raise ``ImportError`` with the install command."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError("polyfuse retrieval needs FAISS; install it with 'pip install faiss-cpu' (or faiss-gpu)") from error
    return faiss


def gpu_count() -> int:
    """Return the number of GPUs FAISS can use, 0 for a CPU-only build."""
    faiss = import_faiss()
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def kind_of_index(index: Any) -> str:
    """Return how ``index`` handles ids and removal: "ivf", "hnsw", "flat" or "other".

    "ivf": inverted lists, which store ids and remove in place. "flat": exhaustive scans over
    stored codes (Flat, PQ, SQ, LSH), which remove in place. "hnsw": a graph that cannot
    remove but filters with an ``IDSelector``. "other": anything else, such as NSG.
    """
    faiss = import_faiss()
    if isinstance(index, faiss.IndexIDMap2):
        index = index.index
    try:
        faiss.extract_index_ivf(index)
        return "ivf"
    except RuntimeError:
        pass
    base = base_index(index)
    if isinstance(base, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(base, faiss.IndexFlatCodes):
        return "flat"
    return "other"


def base_index(index: Any) -> Any:
    """Return the index under any id map and pre-transforms (OPQ, PCA) of ``index``."""
    faiss = import_faiss()
    base = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap2) else index)
    while isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    return base


def faiss_reason(error: RuntimeError) -> str:
    """Return the reason of a FAISS error without the C++ location that precedes it."""
    return str(error).strip().splitlines()[-1].split(": ", 1)[-1]


def current_search_parameter(index: Any, kind: str) -> int:
    """Return the ``nprobe`` of an IVF index or the ``efSearch`` of an HNSW index."""
    faiss = import_faiss()
    if kind == "ivf":
        return int(faiss.extract_index_ivf(index).nprobe)
    return int(base_index(index).hnsw.efSearch)


def stored_ids(index: Any, kind: str) -> np.ndarray:
    """Return the sorted ids stored in ``index``: the id map's, or those in the inverted lists."""
    faiss = import_faiss()
    if kind != "ivf":
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    chunks = [np.zeros(0, np.int64)]
    for list_number in range(ivf.nlist):
        size = lists.list_size(list_number)
        if size:
            chunks.append(faiss.rev_swig_ptr(lists.get_ids(list_number), size).astype(np.int64))
    return np.sort(np.concatenate(chunks))
