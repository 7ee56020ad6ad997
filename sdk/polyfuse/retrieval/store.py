"""The on-disk layout of a retrieval index: settings, versions, the pointer file and the writer lock.

``INDEX_DIR/index.json`` names the current version folder. A writer fills a new folder beside
it, renames it into place, replaces ``index.json`` atomically and only then deletes older
versions, so a reader, or a writer killed at any point, always finds one complete version.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .._version import __version__
from ..config import config_from_dict, config_to_dict
from ..errors import CheckpointError, PolyfuseError
from ..persistence import atomic_write_json

if TYPE_CHECKING:
    from .id_map import IdMap
    from .vector_index import VectorIndex

logger = logging.getLogger(__name__)

POINTER_NAME = "index.json"
SETTINGS_NAME = "settings.json"
ID_MAP_NAME = "records.jsonl"
STAGING_NAME = ".staging"  # a build's encoded chunks and unfinished version
SAVING_PREFIX = ".saving-"  # a version being written by RetrievalIndex.save
VERSION_PREFIX = "v-"
LOCK_NAME = ".lock"
FORMAT = "polyfuse-retrieval-index"
FORMAT_VERSION = 1
FUSED = "fused"  # the target that stores each record's fused posterior mean
INDEX_SUFFIX = ".faiss"
_TARGET_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class IndexLockedError(PolyfuseError):
    """Another process is writing the same index folder."""


@dataclass(frozen=True)
class RetrievalSettings:
    """Contents and build settings of one retrieval index version, saved as ``settings.json``."""

    fields: tuple[str, ...]  # modality fields encoded for every record
    targets: tuple[str, ...]  # the searchable indexes: fields with at least one record, then "fused"
    metric: str  # "cosine" or "l2"
    model_fingerprint: str  # sha256 of the weights of the model that encoded the records
    model_folder: str | None  # folder of that model, loaded by RetrievalIndex.load unless a model is given
    latent_dim: int  # dimension of every stored embedding
    next_key: int  # the next unused vector id, because ids are never reused
    manifest: str | None = None  # the manifest the index was built from
    manifest_sha256: str | None = None  # its sha256 at build time
    target_recall: float = 0.95  # recall@10 that search parameters were tuned to reach
    index_specs: Mapping[str, Any] = field(default_factory=dict)  # target -> IndexSpec.to_dict()
    tuning: Mapping[str, Any] = field(default_factory=dict)  # target -> TuningResult.to_dict(), or None
    polyfuse_version: str = __version__  # version that wrote these settings

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **config_to_dict(self)}

    @classmethod
    def from_file(cls, path: Path) -> RetrievalSettings:
        data = _read_json(path, "settings")
        data.pop("format", None)
        data.pop("format_version", None)
        return config_from_dict(cls, data, str(path))


def check_target_name(target: str) -> str:
    """Return ``target`` if it can name an index file, else raise ``ValueError``."""
    if not _TARGET_PATTERN.fullmatch(target):
        raise ValueError(
            f"field {target!r} cannot name an index file; use letters, digits, '_', '.' and '-' in modality field names"
        )
    return target


def index_path(version: Path, target: str) -> Path:
    """Return the FAISS file of ``target`` in a version folder."""
    return version / f"{check_target_name(target)}{INDEX_SUFFIX}"


def write_version(folder: Path, settings: RetrievalSettings, indexes: Mapping[str, VectorIndex], id_map: IdMap) -> Path:
    """Write a complete version (one FAISS file per target, the id map, the settings) into the new folder ``folder``."""
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished version left by a killed writer
    folder.mkdir(parents=True)
    for target, index in indexes.items():
        index.save(index_path(folder, target))
    id_map.save(folder / ID_MAP_NAME)
    atomic_write_json(folder / SETTINGS_NAME, settings.to_dict())
    return folder


def read_pointer(folder: str | Path) -> Path:
    """Return the current version folder of the index in ``folder``."""
    folder = Path(folder)
    pointer = folder / POINTER_NAME
    if not pointer.is_file():
        raise CheckpointError(
            f"no {POINTER_NAME} in {folder}; pass a folder written by 'polyfuse index' or polyfuse.retrieval.build_index"
        )
    data = _read_json(pointer, "index pointer")
    version = folder / str(data.get("version", ""))
    if not data.get("version") or not version.is_dir():
        raise CheckpointError(f"{pointer} names version {data.get('version')!r}, which is missing from {folder}; rebuild the index")
    return version


def publish_version(folder: Path, written: Path) -> Path:
    """Move the complete version folder ``written`` into ``folder``, point ``index.json`` at it, delete older versions."""
    name = f"{VERSION_PREFIX}{datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    version = folder / name
    written.rename(version)
    atomic_write_json(
        folder / POINTER_NAME,
        {"format": FORMAT, "format_version": FORMAT_VERSION, "version": name, "polyfuse_version": __version__},
    )
    remove_stale_versions(folder, keep=name)
    logger.info("Published index version %s in %s", name, folder)
    return version


def remove_stale_versions(folder: Path, keep: str) -> None:
    """Delete every version folder and unfinished save in ``folder`` except ``keep``."""
    for candidate in folder.iterdir():
        stale = candidate.name.startswith((VERSION_PREFIX, SAVING_PREFIX)) and candidate.name != keep
        if stale and candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
            logger.debug("Removed stale index version %s", candidate)


@contextlib.contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for one writer. The OS releases it if the process dies."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        # NOTE: without fcntl (Windows) concurrent writers are not detected.
        yield
        return
    with open(folder / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexLockedError(
                f"another process is writing the index in {folder} (it has locked {folder / LOCK_NAME}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{what} file {path} is missing; rebuild the index") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} line {error.lineno}: invalid JSON ({error.msg})") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a polyfuse retrieval index {what} file")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses format {data['format_version']}, newer than this polyfuse ({__version__}) reads; upgrade polyfuse"
        )
    return data
