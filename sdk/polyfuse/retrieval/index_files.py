"""The files of one vector index: the FAISS file, its JSON settings beside it, and memory-mapping.

``NAME.faiss`` is written by ``faiss.write_index`` and ``NAME.json`` records what FAISS does
not store: the metric, the model fingerprint, the search parameter and the removed ids.
"""

from __future__ import annotations

import dataclasses
import numbers
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import config_from_dict
from ..errors import CheckpointError
from ..persistence import atomic_write, atomic_write_json, read_versioned_json
from ._faiss import import_faiss

METRICS = ("cosine", "l2")
FORMAT = "polyfuse-vector-index"
FORMAT_VERSION = 1
MMAP_MIN_BYTES = 256 * 2**20  # IVF files of this size or more load memory-mapped unless the caller passes mmap


@dataclass(frozen=True)
class VectorIndexConfig:
    """Dimension, factory, metric and model fingerprint of a vector index."""

    dim: int  # embedding dimension
    factory: str  # FAISS index_factory string the index was built from, without an id map
    metric: str = "cosine"  # "cosine" (inner product of L2-normalised vectors) or "l2" (squared Euclidean)
    fingerprint: str | None = None  # sha256 of the weights of the model whose latents the index stores

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, numbers.Integral) or self.dim < 1:
            raise ValueError(f"dim must be a positive vector dimension, got {self.dim!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")


@dataclass
class IndexSettings:
    """Contents of ``NAME.json``: what a vector index needs beyond the FAISS file."""

    config: VectorIndexConfig
    kind: str  # "flat", "hnsw", "ivf" or "other"
    ntotal: int  # searchable vectors, for people reading the file
    search_parameters: dict[str, int] = field(default_factory=dict)  # for example {"nprobe": 16}
    removed_ids: list[int] = field(default_factory=list)  # ids a graph index still stores but no longer returns


def settings_path(path: Path) -> Path:
    """Return the settings file beside the FAISS file ``path``."""
    return path.with_suffix(".json")


def write_index_files(path: str | Path, index: Any, settings: IndexSettings, mapped_from: Path | None = None) -> Path:
    """Write ``index`` to ``path`` and ``settings`` beside it, each atomically, and return ``path``.

    An index memory-mapped from ``mapped_from`` is saved by copying that file.
    """
    faiss = import_faiss()
    path = Path(path)
    if mapped_from is not None:
        # FAISS would write a memory-mapped index as a reference to its source file, which a
        # later save may delete. The index has not changed since loading, so copy that file.
        atomic_write(path, lambda temporary: shutil.copyfile(mapped_from, temporary))
    else:
        atomic_write(path, lambda temporary: faiss.write_index(index, str(temporary)))
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "polyfuse_version": __version__,
        "faiss_version": faiss.__version__,
        **dataclasses.asdict(settings),
    }
    atomic_write_json(settings_path(path), description)
    return path


def read_index_files(path: Path, mmap: bool | None) -> tuple[Any, IndexSettings, Path | None]:
    """Read the FAISS index at ``path`` and its settings, returning the index, the settings and the mapped file.

    ``mmap`` None memory-maps IVF files of at least :data:`MMAP_MIN_BYTES`. The third value is
    the resolved ``path`` when the index is memory-mapped, else None.
    """
    faiss = import_faiss()
    settings = _read_settings(path)
    if not path.is_file():
        raise CheckpointError(f"index file {path} is missing but its settings are in {settings_path(path)}; rebuild the index")
    if mmap is None:
        mmap = settings.kind == "ivf" and path.stat().st_size >= MMAP_MIN_BYTES
    if mmap and settings.kind != "ivf":
        raise ValueError(f"memory-mapping supports IVF indexes only, and {path} is a {settings.kind} index; pass mmap=False")
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
    if index.d != settings.config.dim:
        raise CheckpointError(
            f"{path} contains dimension {index.d} vectors but {settings_path(path)} records {settings.config.dim}; rebuild the index"
        )
    return index, settings, path.resolve() if mmap else None


def _read_settings(path: Path) -> IndexSettings:
    sidecar = settings_path(path)
    description = read_versioned_json(
        sidecar,
        format=FORMAT,
        max_version=FORMAT_VERSION,
        kind="vector index settings file",
        missing_message=f"no settings file {sidecar} beside {path}; pass an index written by VectorIndex.save",
    )
    try:
        return IndexSettings(
            config=config_from_dict(VectorIndexConfig, description["config"], f"{sidecar} 'config'"),
            kind=str(description["kind"]),
            ntotal=int(description.get("ntotal", 0)),
            search_parameters={str(name): int(value) for name, value in description.get("search_parameters", {}).items()},
            removed_ids=[int(value) for value in description.get("removed_ids", [])],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{sidecar}: invalid vector index settings ({error}); rebuild the index") from error
