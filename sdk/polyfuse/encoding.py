"""Encoding records into the shared latent, from memory or from a manifest, and saving the result."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from .data.dataset import PreparedDataset, SkippedRecord, prepare_records
from .data.manifest import Record, read_manifest, records_from_values
from .persistence import atomic_write
from .progress import progress_bar

if TYPE_CHECKING:
    from .model import MultimodalVAE

logger = logging.getLogger(__name__)


@dataclass
class EncodeOutput:
    """Latents of N records.

    ``mean`` and ``logvar`` (N, D) describe the fused posterior of the requested fields
    (for a mixture, its mean and total variance). ``modality_means`` maps each requested
    field to its own encoder's posterior mean (N, D), zero where the field is absent, and
    ``present`` (N, M) marks which of ``fields`` each record holds.
    """

    ids: list[str]
    labels: list[Any]
    fields: tuple[str, ...]
    mean: np.ndarray
    logvar: np.ndarray
    modality_means: dict[str, np.ndarray]
    present: np.ndarray
    skipped: list[SkippedRecord] = field(default_factory=list)

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` file (no pickled objects) atomically."""
        arrays: dict[str, np.ndarray] = {
            "ids": np.asarray(self.ids, dtype=str),
            "fields": np.asarray(self.fields, dtype=str),
            "mean": self.mean,
            "logvar": self.logvar,
            "present": self.present,
        }
        if any(label is not None for label in self.labels):
            arrays["labels"] = np.asarray(["" if label is None else str(label) for label in self.labels], dtype=str)
        for name, means in self.modality_means.items():
            arrays[f"mean_{name}"] = means
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"encode output must end in .npz, got {path}")

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)

        return atomic_write(path, write)


@torch.no_grad()
def encode_prepared(
    model: MultimodalVAE,
    dataset: PreparedDataset,
    fields: Iterable[str] | None = None,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> EncodeOutput:
    """Encode an already preprocessed data set in batches."""
    fields = model.fields if fields is None else model.check_fields(fields)
    was_training = model.training
    model.eval()
    means, logvars, presents = [], [], []
    modality_means: dict[str, list[np.ndarray]] = {name: [] for name in fields}
    starts = range(0, len(dataset), batch_size)
    for start in progress_bar(starts, desc="Encoding", unit="batch", disable=not progress):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        batch = dataset.batch(indices, {name: model.modalities[name] for name in dataset.items})
        experts = model.encode_experts(batch, fields)
        posterior = model.fuse(experts)
        means.append(posterior.mean.cpu().numpy())
        logvars.append(posterior.logvar.cpu().numpy())
        columns = [model.fields.index(name) for name in fields]
        presents.append(experts.present[:, columns].cpu().numpy())
        for name, column in zip(fields, columns):
            modality_means[name].append(experts.mean[:, column].cpu().numpy())
    model.train(was_training)
    dim = model.latent_dim
    return EncodeOutput(
        ids=dataset.ids,
        labels=dataset.labels,
        fields=tuple(fields),
        mean=np.concatenate(means) if means else np.zeros((0, dim), np.float32),
        logvar=np.concatenate(logvars) if logvars else np.zeros((0, dim), np.float32),
        modality_means={name: np.concatenate(v) if v else np.zeros((0, dim), np.float32) for name, v in modality_means.items()},
        present=np.concatenate(presents) if presents else np.zeros((0, len(fields)), bool),
        skipped=list(dataset.skipped),
    )


def encode_records(
    model: MultimodalVAE,
    records: Sequence[Mapping[str, Any]] | Sequence[Record],
    fields: Iterable[str] | None = None,
    *,
    batch_size: int = 256,
    skip_invalid: bool = False,
    progress: bool = False,
) -> EncodeOutput:
    """Encode records given as dicts (field to path or in-memory value) or as manifest records."""
    fields = model.fields if fields is None else model.check_fields(fields)
    if records and not isinstance(records[0], Record):
        records = records_from_values(records, Path.cwd())  # type: ignore[arg-type]  # dicts checked inside
    modalities = {name: model.modalities[name] for name in fields}
    dataset = prepare_records(
        records, modalities, skip_invalid=skip_invalid, progress=progress, skip_hint="To skip invalid records instead, pass skip_invalid=True"  # type: ignore[arg-type]
    )
    return encode_prepared(model, dataset, fields, batch_size=batch_size, progress=progress)


def encode_manifest(
    model: MultimodalVAE,
    manifest: str | Path,
    fields: Iterable[str] | None = None,
    *,
    batch_size: int = 256,
    skip_invalid: bool = False,
    progress: bool = True,
) -> EncodeOutput:
    """Encode every record of a manifest file."""
    records = read_manifest(manifest).records
    return encode_records(model, records, fields, batch_size=batch_size, skip_invalid=skip_invalid, progress=progress)
