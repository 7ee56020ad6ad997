"""Training checkpoints: model, optimizer, random state and progress in one safetensors file.

Everything that is not a tensor goes into the safetensors header as JSON, so resuming
never unpickles anything. Files are written atomically: a process killed while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..errors import CheckpointError
from ..persistence import load_tensors, save_tensors

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "polyfuse-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


@dataclass
class TrainingState:
    """Progress of a run: the next batch to train and what was logged so far."""

    epoch: int = 0  # epoch of the next batch, 0-based
    batch: int = 0  # index of the next batch within that epoch
    step: int = 0  # optimizer steps taken
    history: list[dict[str, float]] = field(default_factory=list)  # mean loss terms per finished epoch
    finished: bool = False
    seconds: float = 0.0  # training wall time summed over every run that reached an epoch end


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    generator: torch.Generator,
    run_config: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically to ``path``."""
    tensors: dict[str, torch.Tensor] = {f"model.{name}": value for name, value in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, values in optimizer_state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_FORMAT_VERSION),
        "polyfuse_version": __version__,
        "state": json.dumps(asdict(state)),
        "run_config": json.dumps(run_config, sort_keys=True),
        "optimizer_groups": json.dumps(optimizer_state["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
    }
    save_tensors(path, tensors, metadata)
    logger.debug("Wrote checkpoint %s at step %d", path, state.step)
    return Path(path)


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """Return the run config stored in a checkpoint, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = handle.metadata() or {}
    _check_format(path, metadata)
    return json.loads(metadata["run_config"])


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> TrainingState:
    """Restore model, optimizer and random state from ``path``; return the saved progress."""
    try:
        tensors, metadata = load_tensors(path)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}; delete it to start over") from error
    _check_format(path, metadata)

    model_state = {name[len("model.") :]: value for name, value in tensors.items() if name.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {error}") from error

    optimizer_state: dict[Any, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optimizer_state.setdefault(int(index), {})[key] = value
    for name, value in json.loads(metadata["optimizer_scalars"]).items():
        index, key = name.split(".", 1)
        optimizer_state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": json.loads(metadata["optimizer_groups"])})

    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    return TrainingState(**json.loads(metadata["state"]))


def _check_format(path: str | Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a polyfuse training checkpoint")
    if int(metadata.get("format_version", "0")) > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer polyfuse ({metadata.get('polyfuse_version')}); upgrade polyfuse")
