"""Conditions for generators: the fused posterior of the given modalities, from raw values or from batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from ..data.dataset import prepare_records
from ..data.manifest import records_from_values
from ..generator import Condition
from ..modality import ModalityBatch
from ..model import MultimodalVAE


@torch.no_grad()
def condition_from_batch(model: MultimodalVAE, batch: Mapping[str, ModalityBatch], fields: Iterable[str]) -> Condition:
    """Return the fused posterior of ``fields`` for each row of a collated batch.

    Rows where none of ``fields`` is present get the prior N(0, I), as fusion defines.
    """
    fields = model.check_fields(fields)
    if not fields:
        raise ValueError("a condition needs at least one field; pass condition=None to sample unconditionally")
    missing = [name for name in fields if name not in batch]
    if missing:
        raise ValueError(f"the batch has no field(s) {', '.join(missing)} to condition on; it has {', '.join(batch) or 'none'}")
    posterior = model.fuse(model.encode_experts(batch, fields))
    return Condition(posterior, tuple(fields))


def encode_condition(
    model: MultimodalVAE,
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    base_dir: str | Path | None = None,
) -> Condition:
    """Encode one record (a dict of field to value) or several into a condition, one row per record.

    Values are what each modality's ``load`` accepts: paths (relative ones resolved against
    ``base_dir``), inline text, arrays. Every record must give the same fields.
    """
    records = [inputs] if isinstance(inputs, Mapping) else list(inputs)
    if not records:
        raise ValueError("inputs are empty; pass a dict of field to value, or None to sample unconditionally")
    fields = tuple(records[0])
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"inputs[{position}] must be a dict of field to value, got {type(record).__name__}")
        if tuple(record) != fields:
            raise ValueError(f"inputs[{position}] has fields {', '.join(record)}, but inputs[0] has {', '.join(fields)}; give every record the same fields")
    model.check_fields(fields)
    if not fields:
        raise ValueError("inputs name no field; pass None to sample unconditionally")

    prepared = records_from_values(records, Path(base_dir).resolve() if base_dir is not None else Path.cwd())
    modalities = {name: model.modalities[name] for name in fields}
    dataset = prepare_records(prepared, modalities, progress=False, description="Reading inputs", skip_hint=None)
    batch = dataset.batch(range(len(dataset)), modalities)
    return condition_from_batch(model, batch, fields)
