"""Choosing a FAISS index type from the number of vectors, their dimension and a memory budget.

The rules follow autofaiss (criteo/autofaiss, ``get_optimal_index_keys_v2``): exact search
while it is cheap, a graph or inverted lists above that, and product quantization only when
the memory budget leaves no other choice.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from dataclasses import dataclass

from ._faiss import faiss_reason, import_faiss, kind_of_index

logger = logging.getLogger(__name__)

# FAISS k-means prints a warning below 39 training points per centroid.
MIN_POINTS_PER_CENTROID = 39

FLAT_MAX_VECTORS = 10_000  # up to this, an exact scan is cheap: 640,000 multiply-adds per query at dimension 64
HNSW_MAX_VECTORS = 1_000_000  # from here on, inverted lists build faster than a graph and remove in place
HNSW_M = 32  # graph neighbours per vector, the largest M that autofaiss chooses
PQ_BITS = 8  # bits per product-quantizer code, the FAISS default
# OPQ trains 8-bit codebooks of its own whatever the index's PQ bits, so it needs 39 * 256 points.
OPQ_MIN_VECTORS = MIN_POINTS_PER_CENTROID * 2**PQ_BITS
# Product-quantizer sizes tried from the most to the least accurate, in bytes per vector.
PQ_SUBQUANTIZERS = (64, 48, 32, 24, 16, 12, 8, 4, 2, 1)

# Memory per vector of the id bookkeeping: an int64 in IndexIDMap2's id list or in an
# inverted list, plus about 40 bytes for IndexIDMap2's reverse hash map (an estimate).
ID_BYTES = 8
ID_MAP_BYTES = ID_BYTES + 40

_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_IVF_PATTERN = re.compile(r"IVF(\d+)")
# A plain product quantizer, "PQ16", "PQ16x8" or "PQ16x8np". Fast-scan variants such as
# "PQ16x4fs" fix their bits and are left alone.
_PQ_PATTERN = re.compile(r"(?<![A-Za-z])PQ(\d+)(?:x(\d+))?(np)?(?=,|$)")
_OPQ_PATTERN = re.compile(r"^OPQ(\d+)(?:_\d+)?,")


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS index to build and why it was chosen."""

    factory: str  # FAISS index_factory string without an id map, for example "IVF1024,Flat"
    kind: str  # "flat", "hnsw", "ivf" or "other", which decides how ids, removal and search parameters work
    estimated_bytes: int | None  # estimate of the built index's memory, None for unrecognised factories
    reason: str  # why this factory was chosen, for the log and the saved settings
    adjustments: tuple[str, ...] = ()  # changes made to fit the training set, one sentence each

    @property
    def nlist(self) -> int | None:
        """Number of inverted lists, or None for an index without them."""
        match = _IVF_PATTERN.search(self.factory)
        return int(match.group(1)) if match else None

    def to_dict(self) -> dict:
        return {
            "factory": self.factory,
            "kind": self.kind,
            "estimated_bytes": self.estimated_bytes,
            "reason": self.reason,
            "adjustments": list(self.adjustments),
        }


def parse_size(value: str | int | None) -> int | None:
    """Parse a memory size such as ``512MB``, ``4GiB``, ``1.5 GB`` or ``1000000`` into bytes.

    KB, MB, GB and TB are powers of 1000, and KiB, MiB, GiB and TiB powers of 1024. A bare
    number is bytes. ``None`` stays ``None`` (no budget).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"memory size must be a number of bytes or a string such as '512MB', got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"memory size must be > 0 bytes, got {value}")
        return value
    match = _SIZE_PATTERN.match(str(value))
    if match is None:
        raise ValueError(
            f"invalid memory size {value!r}; write a number with an optional unit: B, KB, MB, GB, TB "
            f"(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), for example '512MB' or '4GiB'"
        )
    number, unit = float(match.group(1)), (match.group(2) or "b").lower()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory size must be > 0 bytes, got {value!r}")
    return size


def format_size(size: int | None) -> str:
    """Return ``size`` in bytes as a short human-readable string such as ``512.0 MiB``."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"


def choose_index_spec(count: int, dim: int, memory_budget: str | int | None = None, factory: str | None = None) -> IndexSpec:
    """Choose the index for ``count`` vectors of dimension ``dim`` within ``memory_budget`` bytes.

    Without ``factory`` the first of these whose estimated memory fits is chosen: ``Flat`` up
    to 10,000 vectors, ``HNSW32`` below 1,000,000 vectors, ``IVF{nlist},Flat`` above 10,000,
    and ``OPQ{m},IVF{nlist},PQ{m}`` with the largest code that fits. A ``factory`` string
    overrides the choice. Its list count and PQ bits are lowered when ``count`` is too small
    to train them (see :func:`fit_factory_to_training_size`).
    """
    _check_count_and_dim(count, dim)
    count, dim = int(count), int(dim)
    budget = parse_size(memory_budget)
    if factory is not None:
        return _requested_spec(factory, count, dim, budget)

    flat_bytes = estimate_index_bytes("Flat", count, dim)
    if count <= FLAT_MAX_VECTORS and _fits(flat_bytes, budget):
        return IndexSpec("Flat", "flat", flat_bytes, f"exact search: {count} vectors are at most {FLAT_MAX_VECTORS:,}")

    if FLAT_MAX_VECTORS < count < HNSW_MAX_VECTORS:
        hnsw = f"HNSW{HNSW_M}"
        hnsw_bytes = estimate_index_bytes(hnsw, count, dim)
        if _fits(hnsw_bytes, budget):
            return IndexSpec(hnsw, "hnsw", hnsw_bytes, f"graph search: {count:,} vectors, and the graph fits the memory budget")

    nlist = default_nlist(count)
    if count > FLAT_MAX_VECTORS:
        ivf = f"IVF{nlist},Flat"
        ivf_bytes = estimate_index_bytes(ivf, count, dim)
        if _fits(ivf_bytes, budget):
            reason = f"inverted lists: {count:,} vectors" + (
                ", and a graph would exceed the memory budget" if count < HNSW_MAX_VECTORS else f", at least {HNSW_MAX_VECTORS:,}"
            )
            return IndexSpec(ivf, "ivf", ivf_bytes, reason)

    return _quantized_spec(count, dim, nlist, budget)


def default_nlist(count: int) -> int:
    """Return the inverted-list count for ``count`` vectors: the power of two nearest 4 * sqrt(count).

    It is capped so that every list gets at least :data:`MIN_POINTS_PER_CENTROID` training points.
    """
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(count))))
    trainable = max(1, count // MIN_POINTS_PER_CENTROID)
    if nlist > trainable:
        nlist = 2 ** int(math.log2(trainable))
    return max(1, nlist)


def fit_factory_to_training_size(factory: str, count: int) -> tuple[str, tuple[str, ...]]:
    """Lower the list count and PQ bits of ``factory`` until ``count`` vectors can train them.

    k-means with c centroids wants about 39 * c training points, so an OPQ rotation is left
    out below 9,984 vectors. Returns the factory to build and one sentence per change, empty
    when nothing changed. Product quantizers also get the "np" suffix, without a sentence.
    It skips FAISS's polysemous training, which only serves Hamming-threshold search (not
    used here) and took 52 s for PQ32x8 on 2,000 vectors on a 2-core machine.
    """
    adjustments: list[str] = []

    def fewer_lists(match: re.Match) -> str:
        nlist = int(match.group(1))
        needed = MIN_POINTS_PER_CENTROID * nlist
        if count >= needed:
            return match.group(0)
        smaller = max(1, count // MIN_POINTS_PER_CENTROID)
        adjustments.append(
            f"IVF{nlist} needs at least {needed:,} training vectors but only {count:,} are available; using IVF{smaller}"
        )
        return f"IVF{smaller}"

    def fewer_bits(match: re.Match) -> str:
        subquantizers, bits = int(match.group(1)), int(match.group(2) or PQ_BITS)
        needed = MIN_POINTS_PER_CENTROID * 2**bits
        if count >= needed:
            return f"PQ{subquantizers}x{bits}np"
        smaller = _trainable_bits(count)
        adjustments.append(
            f"PQ{subquantizers}x{bits} needs at least {needed:,} training vectors but only {count:,} are available; "
            f"using PQ{subquantizers}x{smaller}"
        )
        return f"PQ{subquantizers}x{smaller}np"

    def without_rotation(match: re.Match) -> str:
        if count >= OPQ_MIN_VECTORS:
            return match.group(0)
        adjustments.append(
            f"OPQ{match.group(1)} trains 8-bit codebooks that need at least {OPQ_MIN_VECTORS:,} training vectors but "
            f"only {count:,} are available; leaving the rotation out"
        )
        return ""

    fitted = _OPQ_PATTERN.sub(without_rotation, factory)
    fitted = _IVF_PATTERN.sub(fewer_lists, fitted, count=1)
    fitted = _PQ_PATTERN.sub(fewer_bits, fitted)
    return fitted, tuple(adjustments)


def estimate_index_bytes(factory: str, count: int, dim: int) -> int | None:
    """Estimate the memory in bytes of ``factory`` with ``count`` vectors, or return None if unrecognised.

    The estimates count vector storage, ids, graph links, centroids and rotation matrices.
    They leave out allocator overhead.
    """
    floats = 4 * dim
    if factory == "Flat":
        return count * (floats + ID_MAP_BYTES)
    hnsw = re.fullmatch(r"HNSW(\d+)(?:,Flat)?", factory)
    if hnsw:
        # Level 0 stores 2 * M int32 links per vector. Upper levels, offsets and level numbers
        # add a few percent (an estimate).
        links = int(4 * 2 * int(hnsw.group(1)) * 1.05)
        return count * (floats + links + ID_MAP_BYTES)
    ivf = _IVF_PATTERN.search(factory)
    if ivf is None:
        return None
    centroids = int(ivf.group(1)) * floats
    if re.fullmatch(r"IVF\d+,Flat", factory):
        return count * (floats + ID_BYTES) + centroids
    quantized = re.fullmatch(r"(?:OPQ(\d+)(?:_\d+)?,)?IVF\d+,PQ(\d+)(?:x(\d+))?(?:np)?", factory)
    if quantized:
        subquantizers, bits = int(quantized.group(2)), int(quantized.group(3) or PQ_BITS)
        code_bytes = math.ceil(subquantizers * bits / 8)
        rotation = floats * dim if quantized.group(1) else 0
        codebooks = 2**bits * floats
        return count * (code_bytes + ID_BYTES) + centroids + rotation + codebooks
    return None


def check_factory(factory: str, dim: int) -> str:
    """Build an empty ``factory`` index to check the string, and return its kind (see ``_faiss.kind_of_index``)."""
    faiss = import_faiss()
    if "IDMap" in factory:
        raise ValueError(
            f"index spec {factory!r} contains IDMap; leave it out, because polyfuse adds the id map that the index type needs"
        )
    try:
        index = faiss.index_factory(int(dim), factory)
    except RuntimeError as error:
        raise ValueError(
            f"invalid FAISS factory string {factory!r} for dimension {dim}: {faiss_reason(error)}. "
            f"Examples: 'Flat', 'HNSW32', 'IVF1024,Flat', 'OPQ16,IVF1024,PQ16'"
        ) from None
    return kind_of_index(index)


def _requested_spec(factory: str, count: int, dim: int, budget: int | None) -> IndexSpec:
    factory = factory.strip()
    if not factory:
        raise ValueError("index spec is empty; pass a FAISS factory string such as 'Flat', 'HNSW32' or 'IVF1024,Flat'")
    check_factory(factory, dim)
    fitted, adjustments = fit_factory_to_training_size(factory, count)
    for adjustment in adjustments:
        logger.warning("Index spec %s: %s", factory, adjustment)
    estimated = estimate_index_bytes(fitted, count, dim)
    if budget is not None and estimated is not None and estimated > budget:
        logger.warning(
            "Index spec %s needs about %s for %d vectors, above the memory budget of %s; building it as requested",
            fitted, format_size(estimated), count, format_size(budget),
        )
    return IndexSpec(fitted, check_factory(fitted, dim), estimated, f"requested factory string {factory!r}", adjustments)


def _quantized_spec(count: int, dim: int, nlist: int, budget: int | None) -> IndexSpec:
    candidates = [m for m in PQ_SUBQUANTIZERS if m <= dim and dim % m == 0]
    factory = ""
    estimated: int | None = None
    # Fewer vectors than OPQ or 8-bit codebooks need get no rotation and smaller codebooks.
    rotation = count >= OPQ_MIN_VECTORS
    bits = PQ_BITS if count >= MIN_POINTS_PER_CENTROID * 2**PQ_BITS else _trainable_bits(count)
    for subquantizers in candidates:
        prefix = f"OPQ{subquantizers}," if rotation else ""
        factory = f"{prefix}IVF{nlist},PQ{subquantizers}x{bits}np"
        estimated = estimate_index_bytes(factory, count, dim)
        if _fits(estimated, budget):
            reason = (
                f"product quantization: {count:,} vectors of dimension {dim} need about "
                f"{format_size(estimate_index_bytes('Flat', count, dim))} uncompressed, above the memory budget "
                f"of {format_size(budget)}"
            )
            return IndexSpec(factory, "ivf", estimated, reason)
    raise ValueError(
        f"memory budget {format_size(budget)} is too small for {count:,} vectors of dimension {dim}: the smallest "
        f"index, {factory}, needs about {format_size(estimated)}. Raise the memory budget to at least that, "
        f"or index fewer records"
    )


def _trainable_bits(count: int) -> int:
    """Return the largest PQ bits, at most 8, whose 2**bits centroids ``count`` vectors can train."""
    return min(PQ_BITS, max(1, int(math.log2(max(1, count // MIN_POINTS_PER_CENTROID)))))


def _fits(estimated: int | None, budget: int | None) -> bool:
    return budget is None or (estimated is not None and estimated <= budget)


def _check_count_and_dim(count: int, dim: int) -> None:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"count must be a positive number of vectors, got {count!r}")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"dim must be a positive vector dimension, got {dim!r}")
