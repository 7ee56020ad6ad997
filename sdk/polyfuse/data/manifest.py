"""Manifests: JSONL or CSV files with one record per line, an ``id`` and one field per modality.

A field holds a path (resolved against the manifest's own folder) or an inline value such
as a caption. ``label`` is optional; every other key is kept as metadata.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import InvalidRecordError
from ..modality import RecordSource

logger = logging.getLogger(__name__)

ID_KEY = "id"
LABEL_KEY = "label"
MANIFEST_SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True)
class Record:
    """One manifest line: its id, raw values by key, optional label and where it came from."""

    id: str
    values: Mapping[str, Any]
    source: RecordSource
    label: Any = None

    def value(self, key: str) -> Any:
        """Return the value of ``key``, or ``None`` when it is missing or empty."""
        value = self.values.get(key)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return value

    def metadata(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """Return every key except ``id``, ``label`` and ``exclude`` (usually the modality fields)."""
        skipped = {ID_KEY, LABEL_KEY, *exclude}
        return {key: value for key, value in self.values.items() if key not in skipped}


@dataclass
class Manifest:
    """All records of one manifest file, in file order."""

    path: Path
    records: list[Record]
    keys: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)


def read_manifest(path: str | Path) -> Manifest:
    """Read a JSONL or CSV manifest; the suffix selects the format.

    Raises :class:`InvalidRecordError` naming the file and line for malformed lines,
    missing or duplicate ids. Files named by the records are not opened here.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise InvalidRecordError("manifest not found", source=str(path), fix="Check the --manifest path")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    else:
        raise InvalidRecordError(
            f"unsupported manifest format '{suffix}'",
            source=str(path),
            fix=f"Use one of {', '.join(MANIFEST_SUFFIXES)}",
        )

    records: list[Record] = []
    keys: set[str] = set()
    first_line_of_id: dict[str, int] = {}
    for line, values in rows:
        source = RecordSource(f"{path} line {line}", path.parent)
        record_id = _record_id(values, source)
        if record_id in first_line_of_id:
            raise source.error(
                ID_KEY, f"duplicate id, first used on line {first_line_of_id[record_id]}", record_id, "Give every record a unique id"
            )
        first_line_of_id[record_id] = line
        keys.update(values)
        records.append(Record(record_id, values, source, values.get(LABEL_KEY)))
    logger.info("Read %d records from %s", len(records), path)
    return Manifest(path, records, keys)


def records_from_values(values: Iterable[Mapping[str, Any]], base_dir: Path | None = None) -> list[Record]:
    """Wrap in-memory dicts as records; ids default to the position, relative paths use ``base_dir``."""
    records = []
    for position, item in enumerate(values):
        if not isinstance(item, Mapping):
            raise InvalidRecordError(f"expected a dict of field to value, got {type(item).__name__}", source=f"records[{position}]")
        source = RecordSource(f"records[{position}]", base_dir)
        record_id = str(item.get(ID_KEY, position))
        records.append(Record(record_id, dict(item), source, item.get(LABEL_KEY)))
    return records


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidRecordError(
                    f"invalid JSON at column {error.colno}: {error.msg}",
                    source=f"{path} line {line_number}",
                    fix="Write one JSON object per line",
                ) from error
            if not isinstance(values, dict):
                raise InvalidRecordError(
                    f"expected a JSON object, got {type(values).__name__}", source=f"{path} line {line_number}"
                )
            yield line_number, values


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        for values in reader:
            if None in values:
                raise InvalidRecordError(
                    f"more cells than the {len(reader.fieldnames)} header columns",
                    source=f"{path} line {reader.line_num}",
                    fix="Quote cells that contain commas",
                )
            cleaned = {key: value for key, value in values.items() if value not in (None, "")}
            # CSV has no types; whole-number labels become ints so they match JSONL manifests.
            label = cleaned.get(LABEL_KEY)
            if isinstance(label, str) and label.lstrip("-").isdigit():
                cleaned[LABEL_KEY] = int(label)
            yield reader.line_num, cleaned


def _record_id(values: Mapping[str, Any], source: RecordSource) -> str:
    record_id = values.get(ID_KEY)
    if record_id is None or (isinstance(record_id, str) and not record_id.strip()):
        raise source.error(ID_KEY, "missing id", fix="Give every record an 'id' key")
    if not isinstance(record_id, (str, int)) or isinstance(record_id, bool):
        raise source.error(ID_KEY, f"id must be a string or integer, got {type(record_id).__name__}", record_id)
    return str(record_id)
