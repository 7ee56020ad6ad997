"""Finding, checking and loading the digits source files: MNIST images, FSDD clips and pendigits trajectories.

The source folder has the layout ``mnist/mnist_train5k.npz``, ``mnist/mnist_test.npz``,
``fsdd/fsdd.npz`` and ``pendigits/pendigits_trajectories.npz``. Every file is checked against
its pinned sha256 before use, and missing files are fetched from the public originals on request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checksums import DIGITS_SOURCE_FILES, FSDD, MNIST_TEST, MNIST_TRAIN, PENDIGITS, SOURCE_FIX, check_source_file
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
    mnist_train = _load_npz(paths[MNIST_TRAIN.key])
    mnist_test = _load_npz(paths[MNIST_TEST.key])
    fsdd = _load_npz(paths[FSDD.key])
    pendigits = _load_npz(paths[PENDIGITS.key])
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


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
