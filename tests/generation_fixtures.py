"""Tiny four-modality data sets and models for the generation and generator tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile

from conftest import TINY_MODALITIES, tiny_run_config, write_tiny_dataset

# Audio and text settings small enough that a model with every built-in modality trains in seconds.
TINY_AUDIO = {
    "sample_rate": 4000, "duration": 0.25, "n_fft": 64, "hop_length": 32, "n_mels": 8, "width": 4,
    "feature_dim": 32, "griffin_lim_iterations": 4,
}
TINY_TEXT = {"max_length": 12, "embedding_dim": 8, "num_layers": 1, "num_heads": 2, "decoder_hidden": 16, "feature_dim": 32}
CAPTIONS = ("zero", "one", "two")
FIELDS = ("image", "audio", "sensor", "text")


def write_tiny_multimodal_dataset(folder: Path, count: int = 24, seed: int = 0) -> Path:
    """Write :func:`write_tiny_dataset`'s records plus a class-specific tone (WAV) and caption per record."""
    manifest = write_tiny_dataset(folder, count=count, seed=seed)
    (folder / "audio").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    for index, record in enumerate(records):
        label = record["label"]
        time = np.arange(1000) / 4000
        tone = 0.5 * np.sin(2 * np.pi * 300 * (label + 1) * time) + rng.normal(0, 0.01, time.shape)
        soundfile.write(folder / "audio" / f"{index}.wav", tone.astype(np.float32), 4000)
        record["audio"] = f"audio/{index}.wav"
        record["text"] = CAPTIONS[label]
    manifest.write_text("".join(json.dumps(record) + "\n" for record in records))
    return manifest


def tiny_multimodal_config(**training) -> dict:
    """Return a run config with tiny networks for image, audio, sensor and text."""
    config = tiny_run_config(fields=("image", "sensor"), **training)
    config["modalities"] = {
        "image": TINY_MODALITIES["image"],
        "audio": TINY_AUDIO,
        "sensor": TINY_MODALITIES["sensor"],
        "text": TINY_TEXT,
    }
    return config


# Generator configs small enough to fit in a few seconds.
TINY_DIFFUSION = {"hidden_dim": 32, "num_layers": 2, "embedding_dim": 16, "num_train_timesteps": 100, "num_inference_steps": 5}
TINY_GAN = {"noise_dim": 4, "hidden_dim": 32, "num_layers": 2, "embedding_dim": 16, "diagnostic_samples": 24, "diagnostic_clusters": 4}
