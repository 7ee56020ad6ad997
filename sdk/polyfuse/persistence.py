"""Atomic file writes and safetensors helpers shared by models, checkpoints and indexes.

Every file is written to a temporary name in the same folder, flushed to disk and then
renamed over the target, so a reader sees either the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ._version import __version__
from .errors import CheckpointError

logger = logging.getLogger(__name__)

# mkstemp creates files readable by the owner only, so written files get the usual permissions
# instead: 0o666 minus the process umask. The umask is read once, because reading it means setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, fsync the result and rename it to ``path``.

    The temporary file lives beside ``path`` so the rename stays on one file system. On any
    error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        write(temporary_path)
        os.chmod(temporary_path, _FILE_MODE)
        _fsync_file(temporary_path)
        os.replace(temporary_path, path)
        _fsync_directory(path.parent)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write tensors atomically as safetensors, moved to the CPU and made contiguous first.

    Moving to the CPU is what lets a model saved on a GPU load on a machine without one.
    """
    from safetensors.torch import save_file

    cpu_tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    return atomic_write(path, lambda temporary: save_file(cpu_tensors, str(temporary), metadata=metadata))


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file onto ``device``; return the tensors and the header metadata."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        metadata = dict(handle.metadata() or {})
        for name in handle.keys():
            tensors[name] = handle.get_tensor(name)
    return tensors, metadata


def sha256_of_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iter_stale_files(folder: Path, pattern: str, keep: set[str]) -> Iterator[Path]:
    """Yield files in ``folder`` matching ``pattern`` whose names are not in ``keep``."""
    for candidate in folder.glob(pattern):
        if candidate.name not in keep:
            yield candidate


def read_versioned_json(path: Path, *, format: str, max_version: int, kind: str, missing_message: str) -> dict[str, Any]:
    """Read a polyfuse JSON file and check its ``format`` and ``format_version``.

    Raises :class:`~polyfuse.errors.CheckpointError` with ``missing_message`` when the file
    is missing, and with a message naming the file when it is not valid JSON, has another
    format or comes from a newer polyfuse. ``kind`` names the file, for example "model config".
    """
    if not path.is_file():
        raise CheckpointError(missing_message)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} line {error.lineno}: invalid JSON ({error.msg})") from error
    if data.get("format") != format:
        raise CheckpointError(f"{path} is not a polyfuse {kind} (format {data.get('format')!r})")
    if data.get("format_version", 0) > max_version:
        raise CheckpointError(
            f"{path} uses {kind} format {data['format_version']}, newer than this polyfuse ({__version__}) reads; upgrade polyfuse"
        )
    return data


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(folder: Path) -> None:
    # Persists the rename itself; some file systems do not support opening a directory.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
