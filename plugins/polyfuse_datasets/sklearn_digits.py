"""The ``sklearn-digits`` recipe: scikit-learn's bundled 8x8 digits as PNG images with captions, no download needed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.datasets import DatasetBuildOutput, DatasetRecipe
from polyfuse.progress import progress_bar

from .captions import choose_captions
from .pairing import CAPTION_STREAM, SPLITS, SUBSET_STREAM, balanced_subset, check_seed_and_limit
from .writing import prepare_output, write_manifest, write_png, write_run_config

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2  # share of each digit's images in the test split
SKLEARN_MAX_VALUE = 16  # load_digits() counts ink in 0-16 per pixel

SKLEARN_DIGITS_TRAIN_CONFIG: dict[str, Any] = {
    "model": {"latent_dim": 16, "fusion": "mopoe"},
    "training": {"epochs": 30, "batch_size": 64},
    "modalities": {
        "image": {"size": [16, 16], "channels": 1, "background": [0, 0, 0]},
        "text": {"max_length": 40},
    },
}

ATTRIBUTION = (
    "Images: Optical Recognition of Handwritten Digits, E. Alpaydin and C. Kaynak, UCI Machine Learning "
    "Repository, as bundled with scikit-learn (sklearn.datasets.load_digits).",
)


class SklearnDigitsRecipe(DatasetRecipe):
    """The 1,797 8x8 digit images bundled with scikit-learn, with captions and labels, split 80/20 by label."""

    name = "sklearn-digits"
    description = "scikit-learn's bundled 8x8 handwritten digits with English captions; needs no download"
    needs_source = False

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
        """Write 8x8 grayscale PNGs (white ink on black), ``train.jsonl``, ``test.jsonl`` and ``polyfuse-train.json``.

        ``source`` and ``fetch`` are ignored because the data ships with scikit-learn.
        """
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        check_seed_and_limit(seed, limit)
        if source is not None or fetch:
            logger.info("The sklearn-digits recipe ignores source and fetch, because its data ships with scikit-learn")

        # 1. Scale 0-16 ink counts to 0-255 and split stratified by label.
        digits = load_digits()
        images = np.rint(digits.images * (255.0 / SKLEARN_MAX_VALUE)).astype(np.uint8)  # (1797, 8, 8)
        labels = np.asarray(digits.target, dtype=np.int64)
        train_rows, test_rows = train_test_split(
            np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=seed
        )
        rows_by_split = {"train": np.sort(train_rows), "test": np.sort(test_rows)}

        # 2. Write the images and one manifest per split.
        out = prepare_output(out, [f"{split}.jsonl" for split in SPLITS])
        caption_rng = np.random.default_rng([seed, CAPTION_STREAM])
        subset_rng = np.random.default_rng([seed, SUBSET_STREAM])
        manifests: dict[str, Path] = {}
        counts: dict[str, int] = {}
        for split in SPLITS:
            rows = rows_by_split[split]
            captions = choose_captions(labels[rows], caption_rng)
            records = []
            positions = balanced_subset(labels[rows], limit, subset_rng)
            for position in progress_bar(
                positions, total=len(positions), desc=f"sklearn-digits {split}", unit="record", disable=not progress
            ):
                record_id = f"{split}-{int(position):05d}"
                row = int(rows[position])
                record = {
                    "id": record_id,
                    "image": f"images/{split}/{record_id}.png",
                    "text": captions[position],
                    "label": int(labels[row]),
                    "sklearn_index": row,  # row of sklearn.datasets.load_digits()
                }
                write_png(out / record["image"], images[row])
                records.append(record)
            manifests[split] = write_manifest(out / f"{split}.jsonl", records)
            counts[split] = len(records)

        # 3. The suggested run config for ``polyfuse train --config``.
        config = write_run_config(out, SKLEARN_DIGITS_TRAIN_CONFIG)
        notes = list(ATTRIBUTION)
        if limit is not None:
            notes.append(
                f"limit {limit}: a label-balanced subset of each split, with the ids of a full build with seed {seed}."
            )
        logger.info("Built sklearn-digits in %s: %s", out, ", ".join(f"{split} {count}" for split, count in counts.items()))
        return DatasetBuildOutput(out=out, manifests=manifests, counts=counts, config=config, notes=notes)
