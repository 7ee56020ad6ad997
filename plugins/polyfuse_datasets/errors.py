"""Exceptions that the built-in data set recipes raise for missing, damaged or unreachable sources."""

from __future__ import annotations

from polyfuse.errors import PolyfuseError


class SourceError(PolyfuseError):
    """A source file of a recipe is missing, invalid or cannot be converted; the message names it and the fix."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A source file is not in the ``--source`` folder and fetching was not requested."""


class ChecksumError(SourceError, ValueError):
    """A source file, a download or converted arrays do not match their pinned sha256."""


class DownloadError(SourceError, OSError):
    """A download failed or timed out; the message names the URL and how to copy the file by hand."""
