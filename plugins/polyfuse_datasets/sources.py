"""Finding, checking and loading recipe source files: the digits files, and single files that are copied by hand.

The digits source folder has the layout ``mnist/mnist_train5k.npz``, ``mnist/mnist_test.npz``,
``fsdd/fsdd.npz`` and ``pendigits/pendigits_trajectories.npz``. Every file is checked against
its pinned sha256 before use, and missing digits files are fetched from the public originals on
request. Files that no recipe can fetch go through :func:`locate_manual_source`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checksums import (
    DIGITS_SOURCE_FILES,
    FSDD,
    MNIST_TEST,
    MNIST_TRAIN,
    PENDIGITS,
    SOURCE_FIX,
    SourceFile,
    check_source_file,
)
from .errors import SourceError, SourceNotFoundError
from .originals import fetch_source_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MnistImages:
    """MNIST images with their labels, in file order."""

    images: np.ndarray  # (N, 28, 28) uint8, 0 is background and 255 is ink
    labels: np.ndarray  # (N,) uint8 digit 0-9


@dataclass(frozen=True)
class SpokenDigits:
    """Free Spoken Digit Dataset clips, concatenated, with their metadata."""

    audio: np.ndarray  # (S,) int16 mono PCM of every clip
    offsets: np.ndarray  # (N + 1,) int64, clip i is audio[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # (N,) uint8 spoken digit
    speakers: np.ndarray  # (N,) uint8 index into speaker_names
    speaker_names: np.ndarray  # (K,) str
    is_test: np.ndarray  # (N,) bool, the official test split (takes 0-4)
    filenames: np.ndarray  # (N,) str, original wav name
    sample_rate: int  # Hz

    def clip(self, index: int) -> np.ndarray:
        """Return the int16 samples of clip ``index``."""
        return self.audio[self.offsets[index] : self.offsets[index + 1]]


@dataclass(frozen=True)
class PenTrajectories:
    """UCI pendigits pen trajectories, concatenated, with their metadata."""

    points: np.ndarray  # (P, 3) float32 columns x, y, pen_up
    offsets: np.ndarray  # (N + 1,) int64, sample i is points[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # (N,) int64 digit
    split: np.ndarray  # (N,) uint8, 0 for the training writers and 1 for the test writers
    writers: np.ndarray  # (N,) int16 writer id 0-43

    def trajectory(self, index: int) -> np.ndarray:
        """Return the (T, 3) float32 points of sample ``index``."""
        return self.points[self.offsets[index] : self.offsets[index + 1]]


@dataclass(frozen=True)
class DigitsSources:
    """Every source array that the digits recipe pairs, and the files they came from."""

    mnist_train: MnistImages
    mnist_test: MnistImages
    fsdd: SpokenDigits
    pendigits: PenTrajectories
    paths: dict[str, Path]  # SourceFile.key to the checked file


def locate_digits_sources(source: Path | None, *, fetch: bool, cache: Path, progress: bool = True) -> dict[str, Path]:
    """Return the checked path of every digits source file, keyed by ``SourceFile.key``.

    Files in ``source`` are used when present and must match their pins. With ``fetch``, files
    missing there are taken from ``cache`` or downloaded and converted into it. A file in
    ``source`` that fails its check is an error even with ``fetch``, because the folder was named on purpose.
    """
    if source is None and not fetch:
        raise SourceError(f"the digits recipe needs its source files. {SOURCE_FIX}")
    if source is not None:
        source = Path(source).expanduser()
        if not source.is_dir():
            raise SourceNotFoundError(f"source folder {source} not found. {SOURCE_FIX}")

    paths: dict[str, Path] = {}
    for spec in DIGITS_SOURCE_FILES:
        candidate = source / spec.relative_path if source is not None else None
        if candidate is not None and candidate.is_file():
            check_source_file(candidate, spec)
            logger.info("Using %s", candidate)
            paths[spec.key] = candidate
        elif fetch:
            paths[spec.key] = fetch_source_file(spec, cache, progress=progress)
        else:
            raise SourceNotFoundError(
                f"source file {candidate} ({spec.description}) not found. "
                f"Expected a file with sha256 {spec.sha256}. {SOURCE_FIX}"
            )
    return paths


def load_digits_sources(paths: dict[str, Path]) -> DigitsSources:
    """Load the checked npz files named by :func:`locate_digits_sources`."""
    mnist_train = load_npz(paths[MNIST_TRAIN.key])
    mnist_test = load_npz(paths[MNIST_TEST.key])
    fsdd = load_npz(paths[FSDD.key])
    pendigits = load_npz(paths[PENDIGITS.key])
    return DigitsSources(
        mnist_train=MnistImages(mnist_train["images"], mnist_train["labels"]),
        mnist_test=MnistImages(mnist_test["images"], mnist_test["labels"]),
        fsdd=SpokenDigits(
            audio=fsdd["audio"],
            offsets=fsdd["offsets"],
            labels=fsdd["label"],
            speakers=fsdd["speaker"],
            speaker_names=fsdd["speaker_names"],
            is_test=fsdd["is_test"],
            filenames=fsdd["filename"],
            sample_rate=int(fsdd["sample_rate"]),
        ),
        pendigits=PenTrajectories(
            points=pendigits["points"],
            offsets=pendigits["offsets"],
            labels=pendigits["labels"],
            split=pendigits["split"],
            writers=pendigits["writer"],
        ),
        paths=dict(paths),
    )


def locate_manual_source(spec: SourceFile, *, recipe: str, upstream: str, source: Path | None, fetch: bool) -> Path:
    """Return the checked path of ``spec`` in ``source``, for a recipe that cannot fetch its source file.

    ``upstream`` names the original that the file was converted from, so every message can
    name where to get it. Raises SourceError without ``source``, SourceNotFoundError when the
    folder or the file is missing (also with ``fetch``, which such a recipe cannot honour),
    and ChecksumError when the file does not match its pins.
    """
    fix = (
        f"Copy {spec.relative_path} by hand into the folder that --source names. It contains {spec.description} "
        f"(sha256 {spec.sha256}), converted from {upstream}"
    )
    if source is None:
        if fetch:
            raise SourceNotFoundError(f"the {recipe} recipe cannot fetch {spec.relative_path}. {fix}")
        raise SourceError(f"the {recipe} recipe needs its source file {spec.relative_path}. {fix}")
    source = Path(source).expanduser()
    if not source.is_dir():
        raise SourceNotFoundError(f"source folder {source} not found. {fix}")

    path = source / spec.relative_path
    if not path.is_file():
        cannot_fetch = f", and the {recipe} recipe cannot fetch it" if fetch else ""
        raise SourceNotFoundError(f"source file {path} not found{cannot_fetch}. {fix}")
    check_source_file(path, spec, fix)
    if fetch:
        logger.info("Using %s from --source, because the %s recipe cannot fetch", path, recipe)
    else:
        logger.info("Using %s", path)
    return path


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an npz file into memory, without allowing pickled objects."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
