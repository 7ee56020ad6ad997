"""Building a retrieval index from a manifest: encode every record, then build, tune and publish one index per target.

Encoded records are kept in ``INDEX_DIR/.staging`` in chunks, each written atomically, next
to a state file naming the manifest, the model and the fields. A build that stops half-way
resumes from those chunks, and the previous index stays in use until the new one is complete.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..data.dataset import SkippedRecord, prepare_records
from ..data.manifest import Record, read_manifest
from ..encoding import EncodeOutput, encode_prepared
from ..persistence import atomic_write, atomic_write_json, sha256_of_file
from ..progress import progress_bar
from .id_map import IdMap, entry_for_record
from .index_files import METRICS, VectorIndexConfig
from .latents import TargetEmbeddings, target_embeddings
from .spec import IndexSpec, check_factory, choose_index_spec, format_size, parse_size
from .store import FUSED, STAGING_NAME, RetrievalSettings, check_target_name, publish_version, write_version, writer_lock
from .tuning import DEFAULT_TARGET_RECALL, TuningResult, tune_search_parameter
from .vector_index import VectorIndex

if TYPE_CHECKING:
    from ..model import MultimodalVAE

logger = logging.getLogger(__name__)

STATE_NAME = "state.json"
STATE_FORMAT = "polyfuse-index-build"
CHUNKS_NAME = "chunks"
VERSION_NAME = "version"
BATCHES_PER_CHUNK = 8  # default chunk size in batches: the work a resumed build may have to redo


@dataclass(frozen=True)
class BuildProgress:
    """How far a build has got, passed to ``on_chunk`` after each chunk is saved."""

    chunks_done: int  # chunks encoded and saved, resumed ones included
    chunks_total: int
    records_done: int  # records in those chunks, skipped ones included
    records_total: int


@dataclass
class BuildOutput:
    """Summary of the index that :func:`build_index` published."""

    folder: Path  # the index folder passed as ``out``
    version: Path  # the version folder that ``index.json`` now names
    counts: dict[str, int]  # vectors per target
    specs: dict[str, IndexSpec]  # index chosen per target
    tuning: dict[str, TuningResult | None]  # search parameter per target, None for exact indexes
    skipped: list[SkippedRecord]  # invalid records left out (only with skip_invalid)
    resumed_chunks: int  # chunks reused from an earlier, interrupted build
    seconds: float  # wall time of the whole build


ChunkCallback = Callable[[BuildProgress], None]


def build_index(
    model: MultimodalVAE | str | Path,
    manifest: str | Path,
    out: str | Path,
    fields: Sequence[str] | None = None,
    index_spec: str | None = None,
    memory_budget: str | int | None = None,
    metric: str = "cosine",
    batch_size: int = 256,
    progress: bool = True,
    *,
    target_recall: float = DEFAULT_TARGET_RECALL,
    chunk_size: int | None = None,
    skip_invalid: bool = False,
    device: str = "cpu",
    seed: int = 0,
    on_chunk: ChunkCallback | None = None,
) -> BuildOutput:
    """Encode every record of ``manifest`` and publish a searchable index in the folder ``out``.

    ``model`` is a saved model folder or a loaded model with a fingerprint (from
    ``from_pretrained`` or ``save_pretrained``). Each record gets one vector per field it has
    (its modality's posterior mean) and one fused vector. ``index_spec`` is a FAISS factory
    string for every target, else one is chosen per target from its size and its share of
    ``memory_budget`` (bytes or a string such as "4GiB"), in proportion to its vector count.
    Approximate indexes are tuned to ``target_recall`` recall@10 with queries from the
    other modalities. ``chunk_size`` records (default 8 batches) are encoded between saves.
    """
    started = time.perf_counter()

    # 1. Check every argument before any work.
    model, model_folder = _resolve_model(model, device)
    fields = model.check_fields(fields) if fields else model.fields
    for name in fields:
        check_target_name(name)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    budget = parse_size(memory_budget)
    if index_spec is not None:
        check_factory(index_spec, model.latent_dim)
    chunk_size = BATCHES_PER_CHUNK * batch_size if chunk_size is None else chunk_size
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall!r}")
    manifest_path = Path(manifest).expanduser().resolve()
    records = read_manifest(manifest_path).records
    if not records:
        raise ValueError(f"manifest {manifest_path} has no records; an index needs at least one")
    out = Path(out)
    logger.info("Indexing %d records of %s with model %s (fields %s)", len(records), manifest_path, model_folder or "in memory", ", ".join(fields))

    with writer_lock(out):
        # 2. Encode, resuming from the chunks of an interrupted build with the same inputs.
        staging = out / STAGING_NAME
        state = {
            "format": STATE_FORMAT,
            "manifest_sha256": sha256_of_file(manifest_path),
            "model_fingerprint": model.fingerprint,
            "fields": list(fields),
            "records": len(records),
            "chunk_size": chunk_size,
            "skip_invalid": skip_invalid,
        }
        resumed = _prepare_staging(staging, state)
        encoded = _encode_in_chunks(model, records, fields, staging, chunk_size, batch_size, skip_invalid, progress, on_chunk)

        # 3. One index per target, built from the encoded vectors and tuned.
        keys = np.arange(len(encoded.ids), dtype=np.int64)
        targets = {name: found for name, found in target_embeddings(encoded).items() if len(found.rows)}
        if not targets:
            raise ValueError(f"no record of {manifest_path} has a value for any of the fields {', '.join(fields)}")
        shares = _budget_shares(budget, targets)
        indexes: dict[str, VectorIndex] = {}
        specs: dict[str, IndexSpec] = {}
        tuning: dict[str, TuningResult | None] = {}
        for target, found in targets.items():
            specs[target] = _target_spec(target, len(found.rows), model.latent_dim, budget, shares[target], index_spec)
            config = VectorIndexConfig(model.latent_dim, specs[target].factory, metric, model.fingerprint)
            indexes[target] = _build_target(target, found, keys, specs[target], config, seed)
            queries, source = _tuning_queries(target, targets)
            tuning[target] = tune_search_parameter(
                indexes[target], found.embeddings, keys[found.rows], queries, target_recall=target_recall, query_source=source, seed=seed
            )

        # 4. The id map, the settings, then the switch to the new version.
        id_map = _id_map(records, encoded, keys, fields, targets)
        settings = RetrievalSettings(
            fields=tuple(fields),
            targets=tuple(targets),
            metric=metric,
            model_fingerprint=str(model.fingerprint),
            model_folder=str(model_folder) if model_folder else None,
            latent_dim=model.latent_dim,
            next_key=len(keys),
            manifest=str(manifest_path),
            manifest_sha256=state["manifest_sha256"],
            target_recall=target_recall,
            index_specs={target: spec.to_dict() for target, spec in specs.items()},
            tuning={target: result.to_dict() if result else None for target, result in tuning.items()},
        )
        written = write_version(staging / VERSION_NAME, settings, indexes, id_map)
        version = publish_version(out, written)
        shutil.rmtree(staging, ignore_errors=True)

    seconds = time.perf_counter() - started
    counts = {target: index.ntotal for target, index in indexes.items()}
    logger.info("Built index %s in %.1f s: %s", version, seconds, ", ".join(f"{t} {c}" for t, c in counts.items()))
    return BuildOutput(out, version, counts, specs, tuning, list(encoded.skipped), resumed, seconds)


def _resolve_model(model: MultimodalVAE | str | Path, device: str) -> tuple[MultimodalVAE, Path | None]:
    from ..model import MultimodalVAE

    if isinstance(model, (str, Path)):
        folder = Path(model).expanduser().resolve()
        return MultimodalVAE.from_pretrained(folder, device=device), folder
    if not isinstance(model, MultimodalVAE):
        raise TypeError(f"model must be a MultimodalVAE or a saved model folder, got {type(model).__name__}")
    if model.fingerprint is None:
        raise ValueError(
            "the model has no fingerprint because it was never saved or loaded; call model.save_pretrained(folder) "
            "first, or pass the folder, so the index can record which weights produced its vectors"
        )
    return model, None


def _prepare_staging(staging: Path, state: dict[str, Any]) -> int:
    """Keep the chunks of an earlier build with the same ``state``, else start empty. Return the chunks kept."""
    state_path = staging / STATE_NAME
    if state_path.is_file():
        try:
            previous = json.loads(state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = None
        if previous == state:
            kept_chunks = len(list((staging / CHUNKS_NAME).glob("chunk-*.npz")))
            logger.info("Resuming the build in %s: %d encoded chunks kept", staging, kept_chunks)
            return kept_chunks
        logger.info("Discarding %s: it belongs to a build with another manifest, model or fields", staging)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / CHUNKS_NAME).mkdir(parents=True)
    atomic_write_json(state_path, state)
    return 0


def _encode_in_chunks(
    model: MultimodalVAE,
    records: list[Record],
    fields: Sequence[str],
    staging: Path,
    chunk_size: int,
    batch_size: int,
    skip_invalid: bool,
    progress: bool,
    on_chunk: ChunkCallback | None,
) -> EncodeOutput:
    starts = range(0, len(records), chunk_size)
    modalities = {name: model.modalities[name] for name in fields}
    outputs: list[EncodeOutput] = []
    bar = progress_bar(total=len(records), desc="Indexing", unit="record", disable=not progress)
    try:
        for number, start in enumerate(starts):
            chunk_records = records[start : start + chunk_size]
            path = staging / CHUNKS_NAME / f"chunk-{number:06d}.npz"
            if path.is_file():
                outputs.append(_read_chunk(path, fields))
            else:
                dataset = prepare_records(chunk_records, modalities, skip_invalid=skip_invalid, progress=False)
                outputs.append(encode_prepared(model, dataset, fields, batch_size=batch_size))
                _write_chunk(path, outputs[-1])
                if on_chunk is not None:
                    on_chunk(BuildProgress(number + 1, len(starts), start + len(chunk_records), len(records)))
            bar.update(len(chunk_records))
    finally:
        bar.close()
    return _concatenate(outputs, fields, model.latent_dim)


def _write_chunk(path: Path, output: EncodeOutput) -> None:
    arrays = {
        "ids": np.asarray(output.ids, dtype=str),
        "mean": output.mean,
        "logvar": output.logvar,
        "present": output.present,
        "skipped": np.asarray([json.dumps([s.id, s.source, s.error]) for s in output.skipped], dtype=str),
    }
    for name, means in output.modality_means.items():
        arrays[f"mean_{name}"] = means

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write)


def _read_chunk(path: Path, fields: Sequence[str]) -> EncodeOutput:
    with np.load(path, allow_pickle=False) as data:
        skipped = [SkippedRecord(*json.loads(item)) for item in data["skipped"].tolist()]
        return EncodeOutput(
            ids=data["ids"].tolist(),
            labels=[None] * len(data["ids"]),
            fields=tuple(fields),
            mean=data["mean"],
            logvar=data["logvar"],
            modality_means={name: data[f"mean_{name}"] for name in fields},
            present=data["present"],
            skipped=skipped,
        )


def _concatenate(outputs: list[EncodeOutput], fields: Sequence[str], dim: int) -> EncodeOutput:
    def stack(arrays: list[np.ndarray], width: int, dtype: Any) -> np.ndarray:
        return np.concatenate(arrays) if arrays else np.zeros((0, width), dtype)

    return EncodeOutput(
        ids=[record_id for output in outputs for record_id in output.ids],
        labels=[label for output in outputs for label in output.labels],
        fields=tuple(fields),
        mean=stack([o.mean for o in outputs], dim, np.float32),
        logvar=stack([o.logvar for o in outputs], dim, np.float32),
        modality_means={name: stack([o.modality_means[name] for o in outputs], dim, np.float32) for name in fields},
        present=stack([o.present for o in outputs], len(fields), bool),
        skipped=[skipped for output in outputs for skipped in output.skipped],
    )


def _budget_shares(budget: int | None, targets: dict[str, TargetEmbeddings]) -> dict[str, int | None]:
    if budget is None:
        return {target: None for target in targets}
    total = sum(len(found.rows) for found in targets.values())
    return {target: max(1, budget * len(found.rows) // total) for target, found in targets.items()}


def _target_spec(target: str, count: int, dim: int, budget: int | None, share: int | None, index_spec: str | None) -> IndexSpec:
    try:
        return choose_index_spec(count, dim, share, index_spec)
    except ValueError as error:
        if budget is None:
            raise
        raise ValueError(
            f"index {target!r} ({count:,} vectors) gets {format_size(share)} of the memory budget {format_size(budget)}, "
            f"which is split in proportion to vector counts: {error}"
        ) from None


def _build_target(target: str, found: TargetEmbeddings, keys: np.ndarray, spec: IndexSpec, config: VectorIndexConfig, seed: int) -> VectorIndex:
    index = VectorIndex.create(config)
    index.train(found.embeddings, seed=seed)
    index.add(found.embeddings, keys[found.rows])
    logger.info("Index %s: %d vectors in %s (%s)", target, index.ntotal, spec.factory, spec.reason)
    return index


def _tuning_queries(target: str, targets: dict[str, TargetEmbeddings]) -> tuple[np.ndarray, str]:
    """Return query vectors from the modalities other than ``target`` and a description of their source."""
    sources = [name for name in targets if name not in (target, FUSED)]
    if sources:
        return np.concatenate([targets[name].embeddings for name in sources]), ", ".join(sources)
    # One modality only. Its fused posterior means differ from the stored modality means by the
    # pull of the prior, the closest thing to another view of the records that is available.
    logger.warning(
        "Index %s: no other modality to tune with; using the fused vectors as queries, which lie close to the indexed "
        "ones, so recall on cross-modal queries may be lower than measured", target,
    )
    return targets[FUSED].embeddings, FUSED


def _id_map(records: list[Record], encoded: EncodeOutput, keys: np.ndarray, fields: Sequence[str], targets: dict[str, TargetEmbeddings]) -> IdMap:
    by_id = {record.id: record for record in records}
    targets_of_row: list[list[str]] = [[] for _ in encoded.ids]
    for target, found in targets.items():
        for row in found.rows:
            targets_of_row[row].append(target)
    return IdMap(
        entry_for_record(by_id[record_id], int(key), fields, targets_of_row[row])
        for row, (record_id, key) in enumerate(zip(encoded.ids, keys))
    )
