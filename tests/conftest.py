"""Shared fixtures: tiny data sets written as real files, tiny run configs, plugin host isolation."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from polyfuse.plugins import reset_host
from polyfuse.progress import set_progress

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tiny networks keep every test on the CPU in seconds.
TINY_MODALITIES = {
    "image": {"size": [16, 16], "channels": 1, "width": 4, "feature_dim": 32, "background": [0, 0, 0]},
    "sensor": {"channels": 3, "sample_rate": 10.0, "length": 16, "length_mode": "resample", "width": 8, "depth": 2, "feature_dim": 32},
}


@pytest.fixture(autouse=True)
def _quiet_and_isolated(monkeypatch):
    """Silence progress bars, pin threads and rediscover plugins in every test."""
    set_progress(False)
    torch.set_num_threads(1)
    reset_host()
    yield
    reset_host()
    set_progress(None)


def tiny_run_config(fields=("image", "sensor"), **training) -> dict:
    """Return a run config dict with tiny networks for ``fields``."""
    settings = {"epochs": 2, "batch_size": 8, "kl_warmup_steps": 4, "checkpoint_every": 2, "log_every": 1000}
    settings.update(training)
    return {
        "model": {"latent_dim": 4, "fusion": "mopoe"},
        "training": settings,
        "modalities": {field: TINY_MODALITIES[field] for field in fields},
    }


def write_tiny_dataset(folder: Path, count: int = 24, seed: int = 0, missing: float = 0.0) -> Path:
    """Write PNG images and NPY sensor series for ``count`` labelled records plus a JSONL manifest.

    Class k draws bright blobs at a class-specific place and a sine of class-specific
    frequency, so encoders have something to learn. With ``missing`` > 0 each record drops
    each modality with that probability (possibly both).
    """
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "sensor").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        label = index % 3
        pixels = (rng.random((16, 16)) * 60).astype(np.uint8)
        pixels[2 + 4 * label : 6 + 4 * label, 4:12] = 255
        Image.fromarray(pixels, mode="L").save(folder / "images" / f"{index}.png")
        steps = np.arange(int(rng.integers(12, 30)))
        series = np.stack([np.sin(steps * (label + 1) / 3), np.cos(steps * (label + 1) / 3), rng.normal(0, 0.1, len(steps))], 1)
        np.save(folder / "sensor" / f"{index}.npy", series.astype(np.float32))
        record = {"id": f"r{index}", "image": f"images/{index}.png", "sensor": f"sensor/{index}.npy", "label": label}
        for field in ("image", "sensor"):
            if rng.random() < missing:
                del record[field]
        lines.append(json.dumps(record))
    manifest = folder / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


def polyfuse_command() -> list[str]:
    """Return the command that runs the CLI of the interpreter running the tests."""
    return [sys.executable, "-m", "polyfuse"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, POLYFUSE_PROGRESS="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env
