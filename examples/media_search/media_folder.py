"""Turn a folder of media files into manifest records, where files that share a path without suffix form one record.

For example, ``shots/beach.jpg``, ``shots/beach.wav`` and ``shots/beach.txt`` become the
record ``shots/beach`` with an image, a sound and a caption. A file with no partner becomes a
record of one modality. Files and folders whose names start with "." are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import soundfile

logger = logging.getLogger(__name__)

# Suffix -> built-in modality type. polyfuse reads more image formats (any that Pillow
# opens) and audio formats (any that libsndfile reads). Add their suffixes here to index them.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# libsndfile reads MP3 from version 1.1.0 on, so MP3 is indexed only if the installed build lists it.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg") + ((".mp3",) if "MP3" in soundfile.available_formats() else ())
SENSOR_SUFFIXES = (".npy", ".npz", ".csv")  # (time, channels) arrays, where a CSV file may also have a time column
TEXT_SUFFIXES = (".txt",)  # UTF-8 captions, stored inline in the manifest
MODALITY_OF_SUFFIX = {
    **{suffix: "image" for suffix in IMAGE_SUFFIXES},
    **{suffix: "audio" for suffix in AUDIO_SUFFIXES},
    **{suffix: "sensor" for suffix in SENSOR_SUFFIXES},
    **{suffix: "text" for suffix in TEXT_SUFFIXES},
}
FILES_KEY = "files"  # manifest key that maps each file's path relative to the folder to its mtime in nanoseconds


class MediaFolderError(ValueError):
    """Error for a media file or query that cannot become part of a record. The message names the file and the fix."""


@dataclass
class MediaScan:
    """Records found in a media folder, and the files left out."""

    folder: Path  # absolute path of the scanned folder
    records: list[dict[str, Any]]  # manifest records with "id", one key per model field, and FILES_KEY
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason) pairs, filled only with skip_unsupported


def fields_by_modality(model_fields: Mapping[str, str]) -> dict[str, str]:
    """Return modality type -> model field, from the model's field -> modality type.

    Raises ``MediaFolderError`` when two fields share a type, because a file's suffix then
    cannot show which field the file belongs to.
    """
    by_type: dict[str, str] = {}
    for field_name, modality_type in model_fields.items():
        if modality_type in by_type:
            raise MediaFolderError(
                f"the model has two {modality_type} fields, '{by_type[modality_type]}' and '{field_name}', so a "
                f"{modality_type} file cannot be assigned to one of them; write the manifest yourself and use 'polyfuse index'"
            )
        by_type[modality_type] = field_name
    return by_type


def modality_of(path: Path) -> str | None:
    """Return the modality type for the suffix of ``path`` (case-insensitive), or None for an unsupported suffix."""
    return MODALITY_OF_SUFFIX.get(path.suffix.lower())


def scan_media(folder: str | Path, field_of_type: Mapping[str, str], *, skip_unsupported: bool = False) -> MediaScan:
    """Group every file under ``folder`` into manifest records for a model.

    ``field_of_type`` maps each modality type to the model's field, as
    :func:`fields_by_modality` returns it. A file with an unknown suffix, a file of a modality
    that the model lacks, or an empty caption raises ``MediaFolderError``. With
    ``skip_unsupported``, such a file is left out and listed in :attr:`MediaScan.skipped`
    instead. Two files of one modality with the same path without suffix, and a caption that
    is not UTF-8, always raise.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise MediaFolderError(f"media folder {folder} not found or not a directory; pass the folder that contains the media files")
    records: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[Path, str]] = []
    for path in _media_files(folder):
        reason = _unsupported_reason(path, field_of_type)
        if reason is not None:
            if not skip_unsupported:
                raise MediaFolderError(f"{path}: {reason}. Move the file out of {folder}, or pass --skip-unsupported to leave such files out")
            logger.info("Leaving out %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        relative = path.relative_to(folder)
        record_id = relative.with_suffix("").as_posix()
        record = records.setdefault(record_id, {"id": record_id, FILES_KEY: {}})
        field_name = field_of_type[modality_of(path)]
        if field_name in record:
            other = next(name for name in record[FILES_KEY] if modality_of(Path(name)) == modality_of(path))
            raise MediaFolderError(
                f"{folder / other} and {path} are both {modality_of(path)} files of the record '{record_id}'; "
                "rename one so that each record has at most one file per modality"
            )
        record[field_name] = _value_of(path, field_name == field_of_type.get("text"))
        # The modification time lets a later "add" run detect records whose files changed.
        record[FILES_KEY][relative.as_posix()] = path.stat().st_mtime_ns
    logger.info("Found %d records in %s (%d files left out)", len(records), folder, len(skipped))
    return MediaScan(folder, list(records.values()), skipped)


def _media_files(folder: Path) -> list[Path]:
    """Return the files under ``folder`` in a stable order, leaving out hidden files and folders."""
    files = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden:
            files.append(path)
    return files


def _unsupported_reason(path: Path, field_of_type: Mapping[str, str]) -> str | None:
    """Return why ``path`` cannot be indexed for the model, or None if it can."""
    modality = modality_of(path)
    if modality is None:
        suffixes = ", ".join(sorted(MODALITY_OF_SUFFIX))
        return f"unsupported file type '{path.suffix or '(no suffix)'}'; supported suffixes are {suffixes}"
    if modality not in field_of_type:
        return f"this is a {modality} file, but the model has no {modality} field (it has {', '.join(sorted(field_of_type))})"
    if modality == "text" and not _read_caption(path).strip():
        return "the caption file is empty"
    return None


def _value_of(path: Path, is_text: bool) -> str:
    # Captions go into the manifest inline, because only file modalities read a manifest string as a path.
    return _read_caption(path).strip() if is_text else str(path)


def _read_caption(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise MediaFolderError(f"{path}: caption is not valid UTF-8 text ({error}); save it as UTF-8") from error
