"""Searching a retrieval index with any modality, or several at once, and changing it after the build."""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..data.manifest import ID_KEY, Record, records_from_values
from ..encoding import EncodeOutput, encode_records
from ..errors import CheckpointError
from .id_map import IdMap, entry_for_record
from .index_files import VectorIndexConfig
from .latents import query_embeddings, target_embeddings
from .spec import choose_index_spec
from .store import (
    ID_MAP_NAME,
    SAVING_PREFIX,
    SETTINGS_NAME,
    RetrievalSettings,
    index_path,
    publish_version,
    read_pointer,
    write_version,
    writer_lock,
)
from .vector_index import SearchOutput, VectorIndex

if TYPE_CHECKING:
    from ..model import MultimodalVAE

logger = logging.getLogger(__name__)

COMPACT_REMOVED_SHARE = 0.25  # save() rebuilds a graph index once this share of its vectors is removed
LOAD_ATTEMPTS = 3  # reads of the current version when writers publish new ones meanwhile


@dataclass
class Hit:
    """One retrieved record.

    ``score`` is higher for closer records: the cosine similarity in [-1, 1] for metric
    "cosine", the negative squared Euclidean distance for "l2".
    """

    record_id: str
    score: float
    path: str | None  # the file of the searched target's modality, or None for "fused" and inline values
    label: Any
    metadata: dict[str, Any]  # the record's other manifest keys
    paths: dict[str, str] = field(default_factory=dict)  # field -> file, for every modality of the record
    values: dict[str, Any] = field(default_factory=dict)  # field -> inline value, such as a caption


@dataclass
class SearchResult:
    """The hits of one query, best first. There are fewer than k when the target contains fewer records."""

    query_id: str  # the query's "id" key, else its position
    fields: tuple[str, ...]  # the modalities the query used
    target: str
    hits: list[Hit]


class RetrievalIndex:
    """Indexes of one collection in a shared latent space, one per modality plus "fused", and their id map."""

    def __init__(self, folder: Path, settings: RetrievalSettings, model: MultimodalVAE, indexes: dict[str, VectorIndex], id_map: IdMap):
        self.folder = folder
        self.settings = settings
        self.model = model
        self.indexes = indexes
        self.id_map = id_map

    @classmethod
    def load(cls, folder: str | Path, model: MultimodalVAE | None = None, *, device: str = "cpu", mmap: bool | None = None) -> RetrievalIndex:
        """Load the current version of the index in ``folder``.

        Without ``model`` the model is loaded from the folder recorded at build time. Either
        way its fingerprint must match the one the index was built with. ``mmap`` is passed
        to :meth:`VectorIndex.load`.
        """
        folder = Path(folder)
        for attempt in range(LOAD_ATTEMPTS):
            version = read_pointer(folder)
            try:
                settings, indexes, id_map = _read_version(version, mmap)
                break
            except (CheckpointError, OSError):
                # A writer that publishes a new version deletes the old one, possibly while it is
                # being read. Only then is it worth reading the new version.
                if attempt + 1 == LOAD_ATTEMPTS or read_pointer(folder) == version:
                    raise
                logger.info("Index %s changed while it was read; reading the new version", folder)
        model = _matching_model(model, settings, folder, device)
        logger.info("Loaded retrieval index %s (%d records, targets %s)", version, len(id_map), ", ".join(settings.targets))
        return cls(folder, settings, model, indexes, id_map)

    def __len__(self) -> int:
        return len(self.id_map)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    # -- search --------------------------------------------------------------

    def search(self, queries: Sequence[Mapping[str, Any]], target: str, k: int = 10, *, batch_size: int = 256) -> list[SearchResult]:
        """Return the ``k`` records of ``target`` nearest each query.

        Each query is a dict of model field to value (a path, relative to the working
        folder, or an in-memory value), with any subset of the model's fields and an
        optional "id". Several fields in one query are fused by the model.
        """
        index = self.vector_index(target)
        if isinstance(queries, Mapping):
            raise TypeError("queries must be a list of dicts; wrap a single query as [query]")
        checked = [self._check_query(query, position) for position, query in enumerate(queries)]
        if not checked:
            return []
        used = tuple(name for name in self.model.fields if any(name in query for query in checked))
        records = records_from_values(checked)
        encoded = encode_records(self.model, records, used, batch_size=batch_size)
        output = index.search(query_embeddings(encoded), k, query_fingerprint=self.model.fingerprint)
        query_fields = [tuple(name for name in used if name in query) for query in checked]
        return [self._result(output, row, record.id, query_fields[row], target) for row, record in enumerate(records)]

    def search_embeddings(self, embeddings: np.ndarray, target: str, k: int = 10, *, fields: tuple[str, ...] = ()) -> list[SearchResult]:
        """Return the ``k`` records of ``target`` nearest each latent vector of ``embeddings`` (Q, latent_dim)."""
        output = self.vector_index(target).search(embeddings, k, query_fingerprint=self.model.fingerprint)
        return [self._result(output, row, str(row), fields, target) for row in range(len(output.ids))]

    # -- changes -------------------------------------------------------------

    def add(self, records: Sequence[Record] | Sequence[Mapping[str, Any]], *, base_dir: str | Path | None = None, batch_size: int = 256) -> int:
        """Encode and add new records (manifest records, or dicts with an "id"), and return how many were added.

        Relative paths in dicts are resolved against ``base_dir``. An id already in the
        index raises ``ValueError``, because replacing a record is :meth:`update`'s job.
        """
        records = _as_records(records, base_dir)
        present = [record.id for record in records if record.id in self.id_map]
        if present:
            raise ValueError(f"records already in the index: {_preview(present)}; use update() to replace them")
        self._insert(records, batch_size)
        return len(records)

    def update(self, records: Sequence[Record] | Sequence[Mapping[str, Any]], *, base_dir: str | Path | None = None, batch_size: int = 256) -> int:
        """Re-encode records already in the index and replace their vectors and id map entries."""
        records = _as_records(records, base_dir)
        missing = [record.id for record in records if record.id not in self.id_map]
        if missing:
            raise ValueError(f"records not in the index: {_preview(missing)}; use add() for new records")
        # Encoding first means an unreadable record leaves the index unchanged.
        encoded = self._encode(records, batch_size)
        self.remove([record.id for record in records])
        self._insert(records, batch_size, encoded)
        return len(records)

    def remove(self, record_ids: Sequence[str]) -> int:
        """Remove records by id from every target and the id map, and return how many were removed."""
        record_ids = [str(record_id) for record_id in record_ids]
        missing = [record_id for record_id in record_ids if record_id not in self.id_map]
        if missing:
            raise ValueError(f"records not in the index: {_preview(missing)}")
        for record_id in record_ids:
            entry = self.id_map.remove(record_id)
            for target in entry.targets:
                self.indexes[target].remove(np.array([entry.key], np.int64))
        return len(record_ids)

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the index as a new version of ``folder`` (by default the one it was loaded from) and switch to it."""
        folder = Path(folder) if folder is not None else self.folder
        for target, index in self.indexes.items():
            stored = index.ntotal + index.removed_count
            if stored and index.removed_count / stored >= COMPACT_REMOVED_SHARE:
                logger.info("Compacting %s: %d of %d stored vectors are removed", target, index.removed_count, stored)
                index.compact()
        with writer_lock(folder):
            written = write_version(folder / f"{SAVING_PREFIX}{secrets.token_hex(4)}", self.settings, self.indexes, self.id_map)
            version = publish_version(folder, written)
        self.folder = folder
        return version

    # -- helpers -------------------------------------------------------------

    def vector_index(self, target: str) -> VectorIndex:
        """Return the FAISS index of ``target``, raising ``ValueError`` for an unknown target."""
        if target not in self.indexes:
            raise ValueError(f"unknown target {target!r}; this index has: {', '.join(self.indexes)}")
        return self.indexes[target]

    def _check_query(self, query: Mapping[str, Any], position: int) -> dict[str, Any]:
        if not isinstance(query, Mapping):
            raise TypeError(f"query {position} must be a dict of field to value, got {type(query).__name__}")
        unknown = [key for key in query if key != ID_KEY and key not in self.model.fields]
        if unknown:
            raise ValueError(
                f"query {position} has unknown field(s) {', '.join(map(repr, unknown))}; the model's fields are "
                f"{', '.join(self.model.fields)} (and 'id' to name the query)"
            )
        values = {key: value for key, value in query.items() if key != ID_KEY and value is not None}
        if not values:
            raise ValueError(f"query {position} has no value; give at least one of the fields {', '.join(self.model.fields)}")
        return {ID_KEY: query.get(ID_KEY, position), **values}

    def _result(self, output: SearchOutput, row: int, query_id: str, fields: tuple[str, ...], target: str) -> SearchResult:
        ids, distances = output.row(row)
        scores = distances if self.settings.metric == "cosine" else -distances
        hits = []
        for key, score in zip(ids.tolist(), scores.tolist()):
            entry = self.id_map.entry(key)
            hits.append(
                Hit(entry.record_id, float(score), entry.paths.get(target), entry.label, dict(entry.metadata), dict(entry.paths), dict(entry.values))
            )
        return SearchResult(str(query_id), fields, target, hits)

    def _encode(self, records: list[Record], batch_size: int) -> EncodeOutput:
        return encode_records(self.model, records, self.settings.fields, batch_size=batch_size)

    def _insert(self, records: list[Record], batch_size: int, encoded: EncodeOutput | None = None) -> None:
        encoded = encoded if encoded is not None else self._encode(records, batch_size)
        first = self.settings.next_key
        keys = np.arange(first, first + len(records), dtype=np.int64)
        targets = {name: found for name, found in target_embeddings(encoded).items() if len(found.rows)}
        targets_of_row: list[list[str]] = [[] for _ in records]
        for target, found in targets.items():
            if target not in self.indexes:
                self.indexes[target] = self._new_target(target, found.embeddings)
            self.indexes[target].add(found.embeddings, keys[found.rows])
            for row in found.rows:
                targets_of_row[row].append(target)
        for row, record in enumerate(records):
            self.id_map.add(entry_for_record(record, int(keys[row]), self.settings.fields, targets_of_row[row]))
        self._settings_changed(next_key=first + len(records), targets=tuple(self.indexes))

    def _new_target(self, target: str, embeddings: np.ndarray) -> VectorIndex:
        # A modality that no indexed record had until now gets a new index, sized for the records that arrive.
        spec = choose_index_spec(len(embeddings), self.settings.latent_dim)
        config = VectorIndexConfig(self.settings.latent_dim, spec.factory, self.settings.metric, self.settings.model_fingerprint)
        index = VectorIndex.create(config)
        index.train(embeddings)
        logger.info("Created index %s (%s) for the first records that have it", target, spec.factory)
        self._settings_changed(index_specs={**self.settings.index_specs, target: spec.to_dict()}, tuning={**self.settings.tuning, target: None})
        return index

    def _settings_changed(self, **changes: Any) -> None:
        self.settings = dataclasses.replace(self.settings, **changes)


def _read_version(version: Path, mmap: bool | None) -> tuple[RetrievalSettings, dict[str, VectorIndex], IdMap]:
    settings = RetrievalSettings.from_file(version / SETTINGS_NAME)
    indexes = {target: VectorIndex.load(index_path(version, target), mmap=mmap) for target in settings.targets}
    return settings, indexes, IdMap.load(version / ID_MAP_NAME)


def _matching_model(model: MultimodalVAE | None, settings: RetrievalSettings, folder: Path, device: str) -> MultimodalVAE:
    from ..model import MultimodalVAE

    if model is None:
        if settings.model_folder is None:
            raise CheckpointError(f"the index in {folder} was built from a model in memory; pass model= to load it")
        model_folder = Path(settings.model_folder)
        if not model_folder.is_dir():
            raise CheckpointError(
                f"the index in {folder} was built with the model in {model_folder}, which is missing; pass model= (or --model) "
                f"with the model whose fingerprint is {settings.model_fingerprint[:12]}"
            )
        model = MultimodalVAE.from_pretrained(model_folder, device=device)
    if model.fingerprint != settings.model_fingerprint:
        given = model.fingerprint[:12] if model.fingerprint else "none (never saved)"
        raise CheckpointError(
            f"model fingerprint {given} differs from {settings.model_fingerprint[:12]}, the model that built the index in "
            f"{folder}; its latents are not comparable. Pass that model, or rebuild the index with this one"
        )
    return model


def _as_records(records: Sequence[Record] | Sequence[Mapping[str, Any]], base_dir: str | Path | None) -> list[Record]:
    if isinstance(records, Mapping):
        raise TypeError("records must be a list; wrap a single record as [record]")
    items = list(records)
    if all(isinstance(item, Record) for item in items):
        return items  # type: ignore[return-value]  # checked just above
    without_id = [position for position, item in enumerate(items) if isinstance(item, Mapping) and item.get(ID_KEY) in (None, "")]
    if without_id:
        raise ValueError(f"records at positions {_preview(without_id)} have no 'id'; give every added record a unique id")
    converted = records_from_values(items, Path(base_dir) if base_dir is not None else None)
    counts = collections.Counter(record.id for record in converted)
    duplicates = sorted(record_id for record_id, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate record ids {_preview(duplicates)}; give every record a unique id")
    return converted


def _preview(values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(value) for value in list(values)[:limit])
    return f"{shown} (and {len(values) - limit} more)" if len(values) > limit else shown
