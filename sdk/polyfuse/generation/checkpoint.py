"""Generator training checkpoints: weights, every optimizer, random state and progress in one safetensors file.

The format follows the VAE checkpoints of :mod:`polyfuse.training.checkpoint`, but contains
any number of named optimizers, because a GAN trains its generator and critic with
separate ones. Everything that is not a tensor goes into the header as JSON, so resuming
never unpickles anything, and the file is written atomically.
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

CHECKPOINT_FORMAT = "polyfuse-generator-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


@dataclass
class GeneratorTrainingState:
    """Progress of a generator run: the next batch to train and what was logged so far."""

    epoch: int = 0  # epoch of the next batch, 0-based
    batch: int = 0  # index of the next batch within that epoch
    step: int = 0  # training steps taken
    history: list[dict[str, float]] = field(default_factory=list)  # mean loss terms per epoch
    finished: bool = False


def save_generator_checkpoint(
    path: str | Path,
    module: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    state: GeneratorTrainingState,
    generator: torch.Generator,
    run_config: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically to ``path``."""
    tensors: dict[str, torch.Tensor] = {f"module.{name}": value for name, value in module.state_dict().items()}
    groups: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for optimizer_name, optimizer in optimizers.items():
        optimizer_state = optimizer.state_dict()
        groups[optimizer_name] = optimizer_state["param_groups"]
        for index, values in optimizer_state["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{optimizer_name}.{index}.{key}"] = value
                else:
                    scalars[f"{optimizer_name}.{index}.{key}"] = value
    tensors["rng.generator"] = generator.get_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_FORMAT_VERSION),
        "polyfuse_version": __version__,
        "state": json.dumps(asdict(state)),
        "run_config": json.dumps(run_config, sort_keys=True),
        "optimizer_groups": json.dumps(groups),
        "optimizer_scalars": json.dumps(scalars),
    }
    save_tensors(path, tensors, metadata)
    logger.debug("Wrote generator checkpoint %s at step %d", path, state.step)
    return Path(path)


def read_generator_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """Return the run config stored in a checkpoint, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"cannot read generator checkpoint {path}: {error}; delete it or pass --restart") from error
    _check_format(path, metadata)
    return json.loads(metadata["run_config"])


def load_generator_checkpoint(
    path: str | Path,
    module: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
) -> GeneratorTrainingState:
    """Restore weights, optimizers and random state from ``path``; return the saved progress."""
    try:
        tensors, metadata = load_tensors(path)
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"cannot read generator checkpoint {path}: {error}; delete it or pass --restart") from error
    _check_format(path, metadata)

    module_state = {name[len("module.") :]: value for name, value in tensors.items() if name.startswith("module.")}
    try:
        module.load_state_dict(module_state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"generator checkpoint {path} does not fit the generator: {error}") from error

    groups = json.loads(metadata["optimizer_groups"])
    missing = sorted(set(optimizers) - set(groups))
    if missing:
        raise CheckpointError(f"generator checkpoint {path} has no state for optimizer(s) {', '.join(missing)}; pass --restart")
    states: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in optimizers}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, optimizer_name, index, key = name.split(".", 3)
            states[optimizer_name].setdefault(int(index), {})[key] = value
    for name, value in json.loads(metadata["optimizer_scalars"]).items():
        optimizer_name, index, key = name.split(".", 2)
        states[optimizer_name].setdefault(int(index), {})[key] = value
    for optimizer_name, optimizer in optimizers.items():
        optimizer.load_state_dict({"state": states[optimizer_name], "param_groups": groups[optimizer_name]})

    generator.set_state(tensors["rng.generator"])
    return GeneratorTrainingState(**json.loads(metadata["state"]))


def _check_format(path: str | Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a polyfuse generator checkpoint (format {metadata.get('format')!r})")
    if int(metadata.get("format_version", "0")) > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer polyfuse ({metadata.get('polyfuse_version')}); upgrade polyfuse")
