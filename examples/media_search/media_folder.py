"""Turning a folder of media files into manifest records: files that share a path without suffix form one record.

``shots/beach.jpg``, ``shots/beach.wav`` and ``shots/beach.txt`` become the record
``shots/beach`` with an image, a sound and a caption; a file with no partner is a record
of one modality. Files and folders whose names start with "." are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import soundfile

logger = logging.getLogger(__name__)

# Suffix -> built-in modality type. polyfuse reads more image formats (any that Pillow
# opens) and audio formats (any that libsndfile reads); add their suffixes here to index them.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# libsndfile reads MP3 from version 1.1 on; older builds do not list it.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg") + ((".mp3",) if "MP3" in soundfile.available_formats() else ())
SENSOR_SUFFIXES = (".npy", ".npz", ".csv")  # (time, channels) arrays; CSV may have a time column
TEXT_SUFFIXES = (".txt",)  # UTF-8 captions, stored inline in the manifest
MODALITY_OF_SUFFIX = {
    **{suffix: "image" for suffix in IMAGE_SUFFIXES},
    **{suffix: "audio" for suffix in AUDIO_SUFFIXES},
    **{suffix: "sensor" for suffix in SENSOR_SUFFIXES},
    **{suffix: "text" for suffix in TEXT_SUFFIXES},
}
FILES_KEY = "files"  # manifest key with each file's path relative to the folder and its modification time


class MediaFolderError(ValueError):
    """A file in the media folder cannot become part of a record; the message names the file and the fix."""


@dataclass
class MediaScan:
    """The records found in a media folder, and the files left out."""

    folder: Path
    records: list[dict[str, Any]]  # manifest records: "id", one key per model field, and FILES_KEY
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason), only with skip_unsupported


def fields_by_modality(model_fields: Mapping[str, str]) -> dict[str, str]:
    """Return modality type -> model field, from the model's field -> modality type.

    Raises ``MediaFolderError`` when two fields share a type, because a file's suffix then
    cannot tell which field it belongs to.
    """
    by_type: dict[str, str] = {}
    for field_name, modality_type in model_fields.items():
        if modality_type in by_type:
            raise MediaFolderError(
                f"the model has two {modality_type} fields, '{by_type[modality_type]}' and '{field_name}', so a "
                f"{modality_type} file cannot be assigned to one; write the manifest yourself and use 'polyfuse index'"
            )
        by_type[modality_type] = field_name
    return by_type


def modality_of(path: Path) -> str | None:
    """Return the modality type that the suffix of ``path`` stands for, or None for unsupported suffixes."""
    return MODALITY_OF_SUFFIX.get(path.suffix.lower())


def scan_media(folder: str | Path, field_of_type: Mapping[str, str], *, skip_unsupported: bool = False) -> MediaScan:
    """Group every file under ``folder`` into records for a model whose fields ``field_of_type`` maps.

    A file with an unknown suffix, of a modality the model lacks, or an empty caption raises
    ``MediaFolderError``, unless ``skip_unsupported`` is set, which leaves it out and lists
    it in :attr:`MediaScan.skipped`. Two files of one modality with the same stem always raise.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise MediaFolderError(f"media folder {folder} does not exist or is not a folder; pass the folder that holds the files")
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
        # The modification time lets a later "add" run find records whose files changed.
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
    # Captions go into the manifest inline, because a manifest string names a file only for file modalities.
    return _read_caption(path).strip() if is_text else str(path)


def _read_caption(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise MediaFolderError(f"{path}: caption is not UTF-8 text ({error}); save it as UTF-8") from error
