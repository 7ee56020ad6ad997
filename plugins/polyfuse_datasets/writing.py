"""Writing recipe outputs: PNG, WAV and NPY files, JSONL manifests and the suggested run config.

A build first removes the manifests of an earlier build, writes the data files, then writes
each manifest atomically after its files. An interrupted build therefore leaves no manifest
that names a missing file or a file from another build.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import soundfile
from PIL import Image

from polyfuse.persistence import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

RUN_CONFIG_NAME = "polyfuse-train.json"


def prepare_output(out: Path, manifest_names: Iterable[str]) -> Path:
    """Create ``out`` and delete the manifests that an earlier build left there, before any file is rewritten."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for name in manifest_names:
        stale = out / name
        if stale.is_file():
            logger.info("Removing %s from an earlier build before its files are rewritten", stale)
            stale.unlink()
    return out


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write uint8 pixels unchanged as an 8-bit PNG: (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA.

    RGBA keeps its alpha channel and the colour of transparent pixels, so readers decide the background.
    """
    colour = pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    if not (pixels.ndim == 2 or colour) or pixels.dtype != np.uint8:
        raise ValueError(
            f"PNG pixels must be a (H, W), (H, W, 3) or (H, W, 4) uint8 array, got shape {pixels.shape} dtype {pixels.dtype}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono int16 samples unchanged as a 16-bit PCM WAV file."""
    if samples.ndim != 1 or samples.dtype != np.int16:
        raise ValueError(f"WAV samples must be a (T,) int16 array, got shape {samples.shape} dtype {samples.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, sample_rate, subtype="PCM_16", format="WAV")


def write_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)


def write_manifest(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write one JSON object per line, atomically; numpy scalars become plain JSON numbers."""
    lines = [json.dumps(dict(record), ensure_ascii=False, default=_json_scalar) for record in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    logger.info("Wrote %d records to %s", len(lines), path)
    return path


def write_run_config(out: Path, config: Mapping[str, Any]) -> Path:
    """Write the suggested ``polyfuse train --config`` file of a recipe."""
    return atomic_write_json(out / RUN_CONFIG_NAME, dict(config))


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"manifest values must be JSON types or numpy scalars, got {type(value).__name__}")
