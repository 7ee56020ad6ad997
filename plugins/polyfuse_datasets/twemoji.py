"""The ``twemoji`` recipe: Twemoji icons as 64x64 RGBA PNGs, each paired with a caption made from its emoji name."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.datasets import DatasetBuildOutput, DatasetRecipe
from polyfuse.progress import progress_bar

from .checksums import TWEMOJI
from .pairing import SPLITS, SUBSET_STREAM, balanced_subset, check_seed_and_limit
from .sources import load_npz, locate_manual_source
from .writing import prepare_output, write_manifest, write_png, write_run_config

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.15  # share of each category's emoji in the test split
TWEMOJI_UPSTREAM = (
    "npm package emoji-datasource-twitter@16.0.0 (emoji.json and img/twitter/64/*.png, "
    "the entries with has_img_twitter in sort_order, without skin-tone variants)"
)

# max_length 80 holds the longest emoji name (78 bytes) with bos and eos, so no caption is cut
# and all 1,911 captions stay distinct.
TWEMOJI_TRAIN_CONFIG: dict[str, Any] = {
    "model": {"latent_dim": 32, "fusion": "mopoe"},
    "training": {"epochs": 60, "batch_size": 64, "alignment_weight": 50.0},
    "modalities": {
        "image": {"size": [32, 32], "channels": 3, "background": [255, 255, 255], "augment_shift": 0.05},
        "text": {"max_length": 80},
    },
}

ATTRIBUTION = (
    "Images: Twemoji v16.0.1, Copyright Twitter, Inc. and other contributors (https://github.com/jdecked/twemoji), "
    "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), from the npm package emoji-datasource-twitter@16.0.0.",
    "Names and categories: emoji-data by Cal Henderson (https://github.com/iamcal/emoji-data), "
    "Copyright (c) 2013 Cal Henderson, MIT licence; the names come from the Unicode emoji data.",
)


@dataclass(frozen=True)
class TwemojiIcons:
    """The Twemoji icons with their emoji-data text fields. Row i of every array is one emoji, in sort_order."""

    images: np.ndarray  # (N, 64, 64, 4) uint8 RGBA, alpha 0 is transparent
    names: np.ndarray  # (N,) str emoji name in the source's case, "GRINNING FACE" or "Egypt Flag"
    short_names: np.ndarray  # (N,) str space-separated short names, "grinning"
    categories: np.ndarray  # (N,) str one of 10 groups, "Animals & Nature"
    subcategories: np.ndarray  # (N,) str, "plant-flower"
    unified: np.ndarray  # (N,) str hexadecimal code points joined by "-", "1F1EA-1F1EC"
    emoji: np.ndarray  # (N,) str the emoji character sequence


class TwemojiRecipe(DatasetRecipe):
    """Twemoji icons paired one to one with captions from their names, split 85/15 within each category.

    The source folder must contain ``twemoji/twemoji64.npz``, which the recipe cannot fetch.
    Each record's label is the emoji's category, for class-level metrics, while instance
    retrieval pairs each test caption with its own icon.
    """

    name = "twemoji"
    description = (
        "1,911 Twemoji icons (64x64 RGBA PNG) captioned with their emoji names, split 85/15 within "
        "each category (1,624 train, 287 test records)"
    )
    needs_source = True

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
        """Write RGBA PNGs, ``train.jsonl``, ``test.jsonl`` and ``polyfuse-train.json`` under ``out``.

        Record ``test-0042`` is position 42 of the test split's source rows in file order, so
        a build with ``limit`` contains a subset of the records of a full build with the same
        seed. ``fetch`` cannot download the source file, so without it in ``source`` the build
        raises SourceNotFoundError.
        """
        check_seed_and_limit(seed, limit)
        out = Path(out).expanduser()

        # 1. Find, check and load the source file. If this fails, the manifests in ``out`` stay as they were.
        path = locate_manual_source(TWEMOJI, recipe=self.name, upstream=TWEMOJI_UPSTREAM, source=source, fetch=fetch)
        icons = load_twemoji(path)

        # 2. Split the full set, then write the files of the records that ``limit`` keeps.
        rows_by_split = split_twemoji(icons.categories, seed)
        captions = twemoji_captions(icons.names, icons.short_names)
        out = prepare_output(out, [f"{split}.jsonl" for split in SPLITS])
        subset_rng = np.random.default_rng([seed, SUBSET_STREAM])
        records_by_split: dict[str, list[dict[str, Any]]] = {}
        for split in SPLITS:
            rows = rows_by_split[split]
            positions = balanced_subset(icons.categories[rows], limit, subset_rng)
            records_by_split[split] = _write_split(out, split, rows, positions, captions, icons, progress)

        # 3. The suggested run config, then the manifests last, so that they only name written files.
        config = write_run_config(out, TWEMOJI_TRAIN_CONFIG)
        manifests = {split: write_manifest(out / f"{split}.jsonl", records) for split, records in records_by_split.items()}
        counts = {split: len(records) for split, records in records_by_split.items()}
        notes = list(ATTRIBUTION)
        if limit is not None:
            notes.append(
                f"limit {limit}: a category-balanced subset of each split, with the ids of a full build with seed {seed}."
            )
        logger.info("Built twemoji in %s: %s", out, ", ".join(f"{split} {count}" for split, count in counts.items()))
        return DatasetBuildOutput(out=out, manifests=manifests, counts=counts, config=config, notes=notes)


def load_twemoji(path: Path) -> TwemojiIcons:
    """Load the checked ``twemoji64.npz`` that :func:`~polyfuse_datasets.sources.locate_manual_source` returned."""
    arrays = load_npz(path)
    return TwemojiIcons(
        images=arrays["images"],
        names=arrays["name"],
        short_names=arrays["short_names"],
        categories=arrays["category"],
        subcategories=arrays["subcategory"],
        unified=arrays["unified"],
        emoji=arrays["emoji"],
    )


def split_twemoji(categories: np.ndarray, seed: int, test_fraction: float = TEST_FRACTION) -> dict[str, np.ndarray]:
    """Return the sorted source rows of each split, drawn with ``seed`` and stratified by category.

    This is :func:`sklearn.model_selection.train_test_split` with ``test_size=test_fraction``,
    ``stratify=categories`` and ``random_state=seed``, so other tools can reproduce the split.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(categories))
    train_rows, test_rows = train_test_split(rows, test_size=test_fraction, stratify=categories, random_state=seed)
    return {"train": np.sort(train_rows), "test": np.sort(test_rows)}


def twemoji_captions(names: np.ndarray, short_names: np.ndarray) -> list[str]:
    """Return one caption per emoji: its lower-cased name, or its first short name where emoji share a name.

    In emoji-data 16.0.0 two emoji are named "MAN IN TUXEDO". Their short names
    ``person_in_tuxedo`` and ``man_in_tuxedo`` become "person in tuxedo" and "man in tuxedo",
    so that every caption names one icon in instance retrieval.
    """
    lowered = [str(name).lower() for name in names]
    uses = Counter(lowered)
    captions = []
    for caption, shorts in zip(lowered, short_names):
        if uses[caption] > 1:
            caption = str(shorts).split()[0].replace("_", " ")
        captions.append(caption)
    return captions


def _write_split(
    out: Path,
    split: str,
    rows: np.ndarray,
    positions: np.ndarray,
    captions: list[str],
    icons: TwemojiIcons,
    progress: bool,
) -> list[dict[str, Any]]:
    """Write the PNGs of the records at ``positions`` of ``rows`` and return their manifest entries."""
    records = []
    for position in progress_bar(
        positions, total=len(positions), desc=f"twemoji {split}", unit="record", disable=not progress
    ):
        record_id = f"{split}-{int(position):04d}"
        row = int(rows[position])
        record = {
            "id": record_id,
            "image": f"images/{split}/{record_id}.png",
            "text": captions[row],
            "label": str(icons.categories[row]),
            "subcategory": str(icons.subcategories[row]),
            "short_names": str(icons.short_names[row]).split(),
            "unified": str(icons.unified[row]),
            "emoji": str(icons.emoji[row]),
            "twemoji_index": row,  # row of twemoji64.npz, in emoji-data sort_order
        }
        write_png(out / record["image"], icons.images[row])
        records.append(record)
    return records
