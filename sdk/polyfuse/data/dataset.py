"""Preprocessed records held in memory, and their batching into padded modality batches.

Every record goes through its modality plugins' ``load`` and ``preprocess`` once; batches
are then collated from the cached tensors, so training reads each file a single time.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..errors import InvalidRecordError, SkippedRecordWarning
from ..modality import Modality, ModalityBatch
from ..progress import progress_bar
from .manifest import Record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out because it was invalid and skipping was requested."""

    id: str
    source: str
    error: str


@dataclass
class PreparedDataset:
    """Preprocessed tensors per field, aligned with ``records``; ``None`` marks an absent value."""

    records: list[Record]
    items: dict[str, list[torch.Tensor | None]]
    skipped: list[SkippedRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [record.id for record in self.records]

    @property
    def labels(self) -> list[Any]:
        return [record.label for record in self.records]

    def presence(self) -> dict[str, int]:
        """Return how many records hold each field."""
        return {name: sum(item is not None for item in items) for name, items in self.items.items()}

    def batch(self, indices: Sequence[int], modalities: Mapping[str, Modality]) -> dict[str, ModalityBatch]:
        """Collate the records at ``indices`` into one batch per field."""
        return {name: modalities[name].collate([self.items[name][i] for i in indices]) for name in self.items}


# Added to the fix of an invalid record by the commands and functions that can skip records.
SKIP_INVALID_HINT = "To skip invalid records instead, pass --skip-invalid (skip_invalid=True)"


def prepare_records(
    records: Sequence[Record],
    modalities: Mapping[str, Modality],
    *,
    skip_invalid: bool = False,
    workers: int | None = None,
    progress: bool = True,
    description: str = "Reading records",
    skip_hint: str | None = SKIP_INVALID_HINT,
) -> PreparedDataset:
    """Load and preprocess every modality field of every record.

    A record whose values are all absent is kept: it trains the prior only. With
    ``skip_invalid`` an invalid record is dropped with a :class:`SkippedRecordWarning`
    naming it; otherwise its :class:`InvalidRecordError` propagates, with ``skip_hint``
    added to its fix. Callers that offer no way to skip records pass ``skip_hint=None``.
    """
    workers = workers or min(4, os.cpu_count() or 1)

    def prepare(record: Record) -> dict[str, torch.Tensor | None] | InvalidRecordError:
        try:
            return _prepare_record(record, modalities)
        except InvalidRecordError as error:
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(progress_bar(pool.map(prepare, records), total=len(records), desc=description, disable=not progress))

    kept: list[Record] = []
    items: dict[str, list[torch.Tensor | None]] = {name: [] for name in modalities}
    skipped: list[SkippedRecord] = []
    for record, result in zip(records, results):
        if isinstance(result, InvalidRecordError):
            if not skip_invalid:
                raise result.with_fix(skip_hint) if skip_hint else result
            skipped.append(SkippedRecord(record.id, record.source.description, str(result)))
            warnings.warn(f"skipped record '{record.id}': {result}", SkippedRecordWarning, stacklevel=2)
            continue
        kept.append(record)
        for name in modalities:
            items[name].append(result[name])
    if skipped:
        logger.warning("Skipped %d invalid record(s) of %d", len(skipped), len(records))
    return PreparedDataset(kept, items, skipped)


def _prepare_record(record: Record, modalities: Mapping[str, Modality]) -> dict[str, torch.Tensor | None]:
    prepared: dict[str, torch.Tensor | None] = {}
    for name, modality in modalities.items():
        value = record.value(name)
        prepared[name] = None if value is None else modality.prepare(value, record.source)
    return prepared
