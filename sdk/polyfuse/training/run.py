"""Training from a manifest into an output folder: what ``polyfuse train`` runs.

The folder ends up with the saved model (``config.json`` and weights) and
``checkpoints/last.safetensors``. Running again with the same config resumes from that
checkpoint; ``training.epochs`` may differ, to extend a finished run, and so may the
thread count, device and logging and checkpoint intervals.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

import torch

from ..data.dataset import prepare_records
from ..data.manifest import read_manifest
from ..errors import CheckpointError, ConfigError
from ..model import MultimodalVAE
from .checkpoint import read_checkpoint_config
from .config import RunConfig
from .trainer import StepCallback, Trainer, TrainOutput

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoints/last.safetensors"


def train(
    manifest: str | Path,
    out: str | Path,
    run_config: RunConfig = RunConfig(),
    *,
    fields: Iterable[str] | None = None,
    skip_invalid: bool = False,
    resume: bool = True,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> TrainOutput:
    """Train a model on ``manifest`` and save it to ``out``.

    Fields are, in order of precedence: ``fields``, the modalities of ``run_config``, or
    every manifest key that names a registered modality.
    """
    out = Path(out)

    # 1. Records and fields.
    records = read_manifest(manifest)
    run_config = run_config.select_fields(_choose_fields(fields, run_config, records.keys, manifest))
    modalities = run_config.build_modalities()

    # 2. Refuse to resume a checkpoint that belongs to another config.
    checkpoint = out / CHECKPOINT_NAME
    described = run_config.to_dict()
    if resume and checkpoint.exists():
        _check_resumable(checkpoint, described)

    # 3. Model and data; the seed fixes initialisation.
    torch.manual_seed(run_config.training.seed)
    model = MultimodalVAE(modalities, run_config.model)
    dataset = prepare_records(records.records, modalities, skip_invalid=skip_invalid, progress=progress)
    logger.info("Training on %d records; values per field: %s", len(dataset), dataset.presence())

    # 4. Train, then save the model next to its checkpoint.
    trainer = Trainer(
        model, dataset, run_config.training, checkpoint_path=checkpoint, run_config=described, on_step=on_step, progress=progress
    )
    output = trainer.fit(resume=resume)
    extra = {"run_config": described, "training_summary": _summary(output, Path(manifest), len(dataset))}
    model.save_pretrained(out, extra_config=extra)
    return output


def _choose_fields(fields: Iterable[str] | None, run_config: RunConfig, keys: set[str], manifest: str | Path) -> list[str]:
    from ..plugins import get_host

    if fields:
        chosen = list(fields)
    elif run_config.modalities:
        chosen = list(run_config.modalities)
    else:
        registered = get_host().modalities
        chosen = sorted(key for key in keys if key in registered)
    if not chosen:
        registered_names = ", ".join(get_host().modalities.names()) or "none"
        raise ConfigError(
            f"no modality fields to train on in {manifest}: its keys are {', '.join(sorted(keys))}; "
            f"registered modalities are {registered_names}. Name fields after modalities or pass --modalities/--config"
        )
    return chosen


def _check_resumable(checkpoint: Path, described: dict) -> None:
    saved = read_checkpoint_config(checkpoint)
    if _without_resumable_changes(saved) != _without_resumable_changes(described):
        raise CheckpointError(
            f"{checkpoint} was written by a run with another config; use a new --out folder, "
            f"or pass --restart to discard the checkpoint. Saved config: {json.dumps(saved, sort_keys=True)}"
        )


# Training fields that may change between a run and its resumption: more epochs extend a
# run, and the others change how it runs, not what it computes.
_RESUMABLE_CHANGES = ("epochs", "num_threads", "device", "log_every", "checkpoint_every")


def _without_resumable_changes(config: dict) -> dict:
    copy = json.loads(json.dumps(config))
    for name in _RESUMABLE_CHANGES:
        copy.get("training", {}).pop(name, None)
    return copy


def _summary(output: TrainOutput, manifest: Path, records: int) -> dict:
    return {
        "manifest": str(manifest),
        "steps": output.steps,
        "records": records,
        # Over the whole run, resumed calls included, so a rerun that finds the run finished keeps them.
        "seconds": round(output.total_seconds, 3),
        "samples_per_second": round(len(output.history) * records / output.total_seconds, 1) if output.total_seconds > 0 else 0.0,
        "final_epoch": output.history[-1] if output.history else {},
    }
