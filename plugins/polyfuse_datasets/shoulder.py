"""The ``shoulder`` recipe: smartwatch IMU windows of 7 shoulder physiotherapy exercises with captions, split by subject.

The source is a subset of the SPAR data set (Burns et al., "Shoulder physiotherapy exercise
recognition: machine learning the inertial signals from a smartwatch", Physiological
Measurement 39(7):075007, 2018): 140 recordings of about 20 repetitions each, at 50 Hz.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.datasets import DatasetBuildOutput, DatasetRecipe
from polyfuse.progress import progress_bar

from .checksums import SHOULDER_WATCH
from .pairing import CAPTION_STREAM, SPLITS, SUBSET_STREAM, balanced_subset, check_seed_and_limit
from .sources import load_npz, locate_manual_source
from .writing import prepare_output, write_manifest, write_npy, write_run_config

logger = logging.getLogger(__name__)

# Each record is a window of WINDOW_SAMPLES samples, and a new window starts every HOP_SAMPLES
# samples. At the recordings' 50 Hz that is 4 s with 50% overlap. Recordings of about 20 repetitions
# last 19 to 52 s, so a window spans roughly one to four repetitions.
WINDOW_SAMPLES = 200
HOP_SAMPLES = 100

# Subjects 9 and 10 form the test split and subjects 1-8 the train split, as the data's README
# suggests, so that no test subject's movements are seen in training.
TEST_SUBJECTS = (9, 10)

SIDES = ("left", "right")  # arm by the source's side code: 0 is the left arm and 1 the right
SHOULDER_UPSTREAM = "PyPI wheel seglearn-1.2.5-py3-none-any.whl (seglearn/data/watch_dataset.npy)"

# {name} is the exercise's long name in lower case, at most 40 characters, so every caption
# fits in the 62 content bytes that the text max_length of 64 leaves.
EXERCISE_CAPTION_TEMPLATES = (
    "{name}",
    "{name} exercise",
    "a patient doing {name}",
    "a person performing {name}",
    "physiotherapy: {name}",
    "a shoulder exercise, {name}",
)

SHOULDER_TRAIN_CONFIG: dict[str, Any] = {
    "model": {"latent_dim": 32, "fusion": "mopoe"},
    "training": {"epochs": 60, "batch_size": 64, "alignment_weight": 50.0},
    "modalities": {
        "sensor": {
            "channels": 6, "sample_rate": 50.0, "input_sample_rate": 50.0,
            "channel_names": ["ax", "ay", "az", "wx", "wy", "wz"],
            "length": WINDOW_SAMPLES, "length_mode": "pad", "normalize": "none",
            "augment_scale": 0.1, "augment_noise": 0.02, "augment_channel_dropout": 0.3,
        },
        "text": {"max_length": 64},
    },
}

ATTRIBUTION = (
    "Sensor: shoulder physiotherapy smartwatch IMU data (subset of the SPAR data set), David M. Burns et al., "
    "University of Toronto / University of Waterloo; distributed in seglearn (https://github.com/dmbee/seglearn), "
    "Copyright (c) 2018 David M. Burns, BSD-3-Clause. Keep the BSD-3-Clause notice when redistributing.",
    "Cite: Burns D.M., Leung N., Hardisty M., Whyne C.M., Henry P., McLachlin S., \"Shoulder physiotherapy "
    "exercise recognition: machine learning the inertial signals from a smartwatch\", Physiological Measurement "
    "39(7):075007, 2018, doi:10.1088/1361-6579/aacfd9.",
)


@dataclass(frozen=True)
class ShoulderRecordings:
    """The smartwatch recordings, concatenated, with their metadata. Entry i of the (N,) arrays is recording i."""

    signals: np.ndarray  # (S, 6) float32, ax, ay, az in g and wx, wy, wz in rad/s
    offsets: np.ndarray  # (N + 1,) int64, recording i is signals[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # (N,) uint8 exercise 0-6
    exercise_codes: np.ndarray  # (7,) str short code of each exercise, "PEN" to "ROW"
    exercise_names: np.ndarray  # (7,) str long name of each exercise, "Pendulum" to "Bent over row with 3 lb dumbbell"
    subjects: np.ndarray  # (N,) uint8 participant 1-10
    sides: np.ndarray  # (N,) uint8 arm, 0 left and 1 right
    sample_rate: float  # Hz

    def recording(self, index: int) -> np.ndarray:
        """Return the (T, 6) float32 samples of recording ``index``."""
        return self.signals[self.offsets[index] : self.offsets[index + 1]]


@dataclass(frozen=True)
class ShoulderWindows:
    """The windows of one split. Entry i of every array belongs to record i."""

    recordings: np.ndarray  # (N,) int64 recording that the window is cut from
    starts: np.ndarray  # (N,) int64 first sample of the window within its recording
    labels: np.ndarray  # (N,) int64 exercise 0-6
    window: int  # samples per window

    def __len__(self) -> int:
        return len(self.labels)


class ShoulderRecipe(DatasetRecipe):
    """Windows of smartwatch accelerometer and gyroscope data paired with captions of the exercise.

    The source folder must contain ``shoulder_watch/shoulder_watch.npz``, which the recipe
    cannot fetch. Each recording is cut into windows of ``WINDOW_SAMPLES`` samples every
    ``HOP_SAMPLES`` samples, and each window is one record labelled with its exercise 0-6.
    The subjects in ``TEST_SUBJECTS`` form the test split and all others the train split.
    """

    name = "shoulder"
    description = (
        "Smartwatch accelerometer and gyroscope windows (4 s at 50 Hz) of 7 shoulder physiotherapy "
        "exercises with English captions, split by subject (1,751 train, 478 test records)"
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
        """Write (T, 6) float32 NPY windows, ``train.jsonl``, ``test.jsonl`` and ``polyfuse-train.json`` under ``out``.

        Record ``train-00042`` is window 42 of the train split, so a build with ``limit``
        contains a subset of the records of a full build with the same seed. The seed picks
        the caption templates and the ``limit`` subset, because the windows and the split are
        fixed. ``fetch`` cannot download the source file, so without it in ``source`` the
        build raises SourceNotFoundError.
        """
        check_seed_and_limit(seed, limit)
        out = Path(out).expanduser()

        # 1. Find, check and load the source file. If this fails, the manifests in ``out`` stay as they were.
        path = locate_manual_source(
            SHOULDER_WATCH, recipe=self.name, upstream=SHOULDER_UPSTREAM, source=source, fetch=fetch
        )
        recordings = load_shoulder_recordings(path)

        # 2. Cut every recording of each split into windows, then write the records that ``limit`` keeps.
        windows_by_split = split_shoulder(recordings)
        out = prepare_output(out, [f"{split}.jsonl" for split in SPLITS])
        caption_rng = np.random.default_rng([seed, CAPTION_STREAM])
        subset_rng = np.random.default_rng([seed, SUBSET_STREAM])
        records_by_split: dict[str, list[dict[str, Any]]] = {}
        for split in SPLITS:
            windows = windows_by_split[split]
            captions = choose_exercise_captions(windows.labels, recordings.exercise_names, caption_rng)
            positions = balanced_subset(windows.labels, limit, subset_rng)
            records_by_split[split] = _write_split(out, split, windows, positions, captions, recordings, progress)

        # 3. The suggested run config, then the manifests last, so that they only name written files.
        config = write_run_config(out, SHOULDER_TRAIN_CONFIG)
        manifests = {split: write_manifest(out / f"{split}.jsonl", records) for split, records in records_by_split.items()}
        counts = {split: len(records) for split, records in records_by_split.items()}
        notes = list(ATTRIBUTION)
        if limit is not None:
            notes.append(
                f"limit {limit}: an exercise-balanced subset of each split, with the ids of a full build with seed {seed}."
            )
        logger.info("Built shoulder in %s: %s", out, ", ".join(f"{split} {count}" for split, count in counts.items()))
        return DatasetBuildOutput(out=out, manifests=manifests, counts=counts, config=config, notes=notes)


def load_shoulder_recordings(path: Path) -> ShoulderRecordings:
    """Load the checked ``shoulder_watch.npz`` that :func:`~polyfuse_datasets.sources.locate_manual_source` returned."""
    arrays = load_npz(path)
    return ShoulderRecordings(
        signals=arrays["signals"],
        offsets=arrays["offsets"],
        labels=arrays["label"],
        exercise_codes=arrays["label_codes"],
        exercise_names=arrays["label_names"],
        subjects=arrays["subject"],
        sides=arrays["side"],
        sample_rate=float(arrays["sample_rate"]),
    )


def split_shoulder(
    recordings: ShoulderRecordings,
    test_subjects: tuple[int, ...] = TEST_SUBJECTS,
    window: int = WINDOW_SAMPLES,
    hop: int = HOP_SAMPLES,
) -> dict[str, ShoulderWindows]:
    """Return the windows of the train split (subjects not in ``test_subjects``) and of the test split."""
    is_test = np.isin(recordings.subjects, test_subjects)
    return {
        "train": cut_windows(recordings, np.flatnonzero(~is_test), window, hop),
        "test": cut_windows(recordings, np.flatnonzero(is_test), window, hop),
    }


def cut_windows(
    recordings: ShoulderRecordings, rows: np.ndarray, window: int = WINDOW_SAMPLES, hop: int = HOP_SAMPLES
) -> ShoulderWindows:
    """Cut the recordings ``rows`` into windows of ``window`` samples that start every ``hop`` samples.

    Windows are listed by recording in ``rows`` order, then by start. The samples after a
    recording's last whole window are left out, and a recording shorter than ``window`` gives none.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1 sample, got window {window} and hop {hop}")
    recording_column, start_column = [], []
    for row in rows:
        length = int(recordings.offsets[row + 1] - recordings.offsets[row])
        starts = np.arange(0, length - window + 1, hop, dtype=np.int64)
        if len(starts) == 0:
            logger.warning("Recording %d has %d samples, fewer than the %d of one window, so it gives no record", row, length, window)
        recording_column.append(np.full(len(starts), row, dtype=np.int64))
        start_column.append(starts)
    recording_rows = np.concatenate(recording_column) if recording_column else np.zeros(0, dtype=np.int64)
    starts = np.concatenate(start_column) if start_column else np.zeros(0, dtype=np.int64)
    return ShoulderWindows(recording_rows, starts, recordings.labels[recording_rows].astype(np.int64), window)


def exercise_caption(name: str, template: int) -> str:
    """Fill ``EXERCISE_CAPTION_TEMPLATES[template]`` with the exercise's long ``name`` in lower case."""
    return EXERCISE_CAPTION_TEMPLATES[template].format(name=name.lower())


def choose_exercise_captions(labels: np.ndarray, exercise_names: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Return one caption per exercise label, drawing each template uniformly with ``rng``."""
    templates = rng.integers(len(EXERCISE_CAPTION_TEMPLATES), size=len(labels))
    return [exercise_caption(str(exercise_names[label]), int(template)) for label, template in zip(labels, templates)]


def _write_split(
    out: Path,
    split: str,
    windows: ShoulderWindows,
    positions: np.ndarray,
    captions: list[str],
    recordings: ShoulderRecordings,
    progress: bool,
) -> list[dict[str, Any]]:
    """Write the NPY files of the windows at ``positions`` and return their manifest entries."""
    records = []
    for position in progress_bar(
        positions, total=len(positions), desc=f"shoulder {split}", unit="record", disable=not progress
    ):
        record_id = f"{split}-{int(position):05d}"
        row = int(windows.recordings[position])
        start = int(windows.starts[position])
        label = int(windows.labels[position])
        record = {
            "id": record_id,
            "sensor": f"sensor/{split}/{record_id}.npy",
            "text": captions[position],
            "label": label,
            "exercise": str(recordings.exercise_names[label]),
            "exercise_code": str(recordings.exercise_codes[label]),
            "subject": int(recordings.subjects[row]),
            "side": SIDES[int(recordings.sides[row])],
            "recording": row,  # recording index in shoulder_watch.npz, in seglearn's order
            "start_seconds": start / recordings.sample_rate,
        }
        write_npy(out / record["sensor"], recordings.recording(row)[start : start + windows.window])
        records.append(record)
    return records
