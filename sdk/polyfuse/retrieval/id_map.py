"""The id map: which record each vector id stands for, with its files, label and metadata.

Every record gets one int64 key, used as its vector id in every target index. A changed
record gets a new key, so a graph index that keeps removed vectors never stores an id twice.
The map is saved as JSON lines, one record per line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..data.manifest import Record
from ..errors import CheckpointError
from ..persistence import atomic_write

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordEntry:
    """One indexed record."""

    key: int  # vector id of the record in every target index
    record_id: str  # the manifest id
    label: Any = None  # the manifest label, or None
    targets: tuple[str, ...] = ()  # target indexes that hold a vector of this record
    paths: Mapping[str, str] = field(default_factory=dict)  # field -> absolute file path, for file values
    values: Mapping[str, Any] = field(default_factory=dict)  # field -> inline value, such as a caption
    metadata: Mapping[str, Any] = field(default_factory=dict)  # every other manifest key

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "id": self.record_id,
                "label": self.label,
                "targets": list(self.targets),
                "paths": dict(self.paths),
                "values": dict(self.values),
                "metadata": dict(self.metadata),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str, where: str) -> RecordEntry:
        try:
            data = json.loads(line)
            return cls(
                key=int(data["key"]),
                record_id=str(data["id"]),
                label=data.get("label"),
                targets=tuple(data.get("targets", ())),
                paths=dict(data.get("paths", {})),
                values=dict(data.get("values", {})),
                metadata=dict(data.get("metadata", {})),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: invalid id map entry ({error}); rebuild the index") from error


class IdMap:
    """Record entries by key and by record id."""

    def __init__(self, entries: Iterable[RecordEntry] = ()):
        self._by_key: dict[int, RecordEntry] = {}
        self._key_of_id: dict[str, int] = {}
        for entry in entries:
            self.add(entry)

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[RecordEntry]:
        return iter(self._by_key.values())

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._key_of_id

    def entry(self, key: int) -> RecordEntry:
        """Return the entry of vector id ``key``."""
        return self._by_key[int(key)]

    def key_of(self, record_id: str) -> int:
        """Return the vector id of ``record_id``."""
        return self._key_of_id[record_id]

    def add(self, entry: RecordEntry) -> None:
        if entry.record_id in self._key_of_id:
            raise ValueError(f"record id {entry.record_id!r} is already in the index; use update() to replace it")
        if entry.key in self._by_key:
            raise ValueError(f"vector id {entry.key} is already used by record {self._by_key[entry.key].record_id!r}")
        self._by_key[entry.key] = entry
        self._key_of_id[entry.record_id] = entry.key

    def remove(self, record_id: str) -> RecordEntry:
        """Remove and return the entry of ``record_id``."""
        key = self._key_of_id.pop(record_id)
        return self._by_key.pop(key)

    def save(self, path: Path) -> Path:
        def write(temporary: Path) -> None:
            with open(temporary, "w", encoding="utf-8") as handle:
                for entry in self._by_key.values():
                    handle.write(entry.to_json() + "\n")

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: Path) -> IdMap:
        if not path.is_file():
            raise CheckpointError(f"id map {path} is missing; rebuild the index")
        with open(path, encoding="utf-8") as handle:
            return cls(RecordEntry.from_json(line, f"{path} line {number}") for number, line in enumerate(handle, 1) if line.strip())


def entry_for_record(record: Record, key: int, fields: Sequence[str], targets: Sequence[str]) -> RecordEntry:
    """Describe ``record`` for the id map: file values become absolute paths, the rest stays inline."""
    paths: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in fields:
        value = record.value(name)
        if value is None:
            continue
        resolved = _resolved_file(value, record)
        if resolved is not None:
            paths[name] = str(resolved)
        elif _is_json(value):
            values[name] = value
    metadata = {}
    dropped = []
    for name, value in record.metadata(exclude=fields).items():
        if _is_json(value):
            metadata[name] = value
        else:
            dropped.append(name)
    if dropped:
        logger.warning("Record %r: keys %s hold values that JSON cannot store; they are left out of the id map", record.id, ", ".join(dropped))
    label = record.label if _is_json(record.label) else str(record.label)
    return RecordEntry(key, record.id, label, tuple(targets), paths, values, metadata)


def _resolved_file(value: Any, record: Record) -> Path | None:
    if not isinstance(value, (str, Path)):
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and record.source.base_dir is not None:
        path = record.source.base_dir / path
    try:
        return path.resolve() if path.is_file() else None
    except OSError:
        # A caption is not a path, and an overlong one makes is_file raise OSError instead of returning False.
        return None


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
