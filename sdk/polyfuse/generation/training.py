"""Training of latent generators: the settings, and the loop with checkpoints and resuming.

Batch order is a function of the seed and the epoch alone, and the checkpoint contains the
random-generator and optimizer states, so a run resumed after a kill reaches the same
weights as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import config_to_dict, require
from ..errors import CheckpointError, NonFiniteLossError
from ..generator import FitOutput, Generator
from ..progress import progress_bar
from .checkpoint import (
    GeneratorTrainingState,
    load_generator_checkpoint,
    read_generator_checkpoint_config,
    save_generator_checkpoint,
)
from .latents import LatentDataset

logger = logging.getLogger(__name__)

# Called after every training step with the progress so far and that step's loss terms.
TrainingCallback = Callable[[GeneratorTrainingState, dict[str, float]], None]


@dataclass(frozen=True)
class GeneratorTrainingConfig:
    """Batching, checkpointing and devices of one generator training run.

    Learning rates and loss weights belong to each generator's own config, because a GAN
    and a diffusion model need different ones.
    """

    epochs: int = 300  # passes over the training records
    batch_size: int = 256  # records per step
    seed: int = 0  # seeds initialisation, shuffling and every training draw
    checkpoint_every: int = 500  # steps between checkpoints; also written at the end of every epoch
    log_every: int = 200  # steps between log lines
    num_threads: int = 0  # torch CPU threads, 0 keeps torch's default
    device: str = "cpu"  # torch device, for example "cpu" or "cuda"

    def __post_init__(self) -> None:
        require(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        require(self.checkpoint_every > 0, f"checkpoint_every must be > 0 steps, got {self.checkpoint_every}")
        require(self.log_every > 0, f"log_every must be > 0 steps, got {self.log_every}")
        require(self.num_threads >= 0, f"num_threads must be >= 0, got {self.num_threads}")


class GeneratorTrainer:
    """Runs :meth:`Generator.training_step` over a :class:`LatentDataset`, with optional checkpoints."""

    def __init__(
        self,
        generator: Generator,
        latents: LatentDataset,
        config: GeneratorTrainingConfig,
        *,
        checkpoint_path: str | Path | None = None,
        run_config: dict[str, Any] | None = None,
        on_step: TrainingCallback | None = None,
        progress: bool = True,
    ):
        if len(latents) == 0:
            raise ValueError("the training latents are empty; check the manifest and the fields of the model")
        if latents.latent_dim != generator.latent_dim:
            raise ValueError(f"latents have dimension {latents.latent_dim} but the generator was built for {generator.latent_dim}")
        self.generator = generator
        self.latents = latents
        self.config = config
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.run_config = run_config or {}
        self.on_step = on_step
        self.progress = progress
        self.device = torch.device(config.device)
        self.random = torch.Generator(device=self.device).manual_seed(config.seed)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.latents) / self.config.batch_size)

    def fit(self, resume: bool = True) -> FitOutput:
        """Train until ``config.epochs`` are done, resuming from the checkpoint when asked and present."""
        config = self.config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        started = time.perf_counter()

        # 1. Statistics first, so that optimizers see the final parameters and a checkpoint overwrites them.
        self.generator.to(self.device)
        self.generator.prepare(self.latents)
        optimizers = self.generator.configure_optimizers()
        state, resumed_from = self._initial_state(optimizers, resume)

        # 2. Epochs, with a checkpoint after each.
        for epoch in range(state.epoch, config.epochs):
            self._train_epoch(epoch, state, optimizers)
            state.epoch, state.batch = epoch + 1, 0
            self._save(state, optimizers)

        # 3. Measurements of the fitted generator, then the final checkpoint.
        self.generator.eval()
        diagnostics = self.generator.diagnose(self.latents, torch.Generator(device=self.device).manual_seed(config.seed))
        state.finished = True
        self._save(state, optimizers)
        return FitOutput(
            history=state.history,
            steps=state.step,
            resumed_from_step=resumed_from,
            seconds=time.perf_counter() - started,
            diagnostics=diagnostics,
        )

    def _initial_state(self, optimizers: dict[str, torch.optim.Optimizer], resume: bool) -> tuple[GeneratorTrainingState, int | None]:
        path = self.checkpoint_path
        if resume and path is not None and path.exists():
            state = load_generator_checkpoint(path, self.generator, optimizers, self.random)
            logger.info("Resuming generator training from %s at epoch %d, batch %d (step %d)", path, state.epoch + 1, state.batch, state.step)
            return state, state.step
        return GeneratorTrainingState(), None

    def _train_epoch(self, epoch: int, state: GeneratorTrainingState, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        config = self.config
        order = torch.randperm(len(self.latents), generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        sums: dict[str, float] = dict(state.history[epoch]) if len(state.history) > epoch else {}
        count = int(sums.pop("_batches", 0))
        bar = progress_bar(total=self.batches_per_epoch, desc=f"Epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not self.progress)
        bar.update(state.batch)
        self.generator.train()
        for batch_index in range(state.batch, self.batches_per_epoch):
            indices = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size]
            values = self.generator.training_step(self.latents.batch(indices, self.device), optimizers, self.random, state.step)
            _check_finite(values, state.step, epoch, batch_index)
            state.step += 1
            state.batch = batch_index + 1
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            # Running sums live in the history, so a checkpoint in the middle of an epoch keeps them.
            partial = dict(sums, _batches=float(count))
            if len(state.history) > epoch:
                state.history[epoch] = partial
            else:
                state.history.append(partial)
            bar.update(1)
            if state.step % config.log_every == 0:
                logger.info("step %d epoch %d: %s", state.step, epoch + 1, _format_terms(values))
            if self.on_step is not None:
                self.on_step(state, values)
            if state.step % config.checkpoint_every == 0:
                self._save(state, optimizers)
        bar.close()
        state.history[epoch] = {name: value / max(count, 1) for name, value in sums.items()}
        logger.debug("epoch %d done: %s", epoch + 1, _format_terms(state.history[epoch]))

    def _save(self, state: GeneratorTrainingState, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        if self.checkpoint_path is not None:
            save_generator_checkpoint(self.checkpoint_path, self.generator, optimizers, state, self.random, self.run_config)


def describe_run(generator: Generator, training: GeneratorTrainingConfig, model_fingerprint: str | None) -> dict[str, Any]:
    """Return the JSON run config that a checkpoint records and a resumed run must match (epochs aside)."""
    return {
        "generator": {"type": generator.name, "config": generator.config_dict()},
        "training": config_to_dict(training),
        "model_fingerprint": model_fingerprint,
    }


def check_resumable(checkpoint: Path, described: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` when ``checkpoint`` was written by a run with another config (epochs aside)."""
    saved = read_generator_checkpoint_config(checkpoint)
    if _without_epochs(saved) != _without_epochs(described):
        raise CheckpointError(
            f"{checkpoint} was written by a generator run with another config or model; pass --restart "
            f"(restart=True) to discard it, or save under another --name. Saved config: {json.dumps(saved, sort_keys=True)}"
        )


def replace_training(training: GeneratorTrainingConfig, **changes: Any) -> GeneratorTrainingConfig:
    """Return ``training`` with the given fields replaced; ``None`` values are ignored."""
    from ..errors import ConfigError

    changes = {key: value for key, value in changes.items() if value is not None}
    try:
        return dataclasses.replace(training, **changes)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from error


def _check_finite(values: dict[str, float], step: int, epoch: int, batch_index: int) -> None:
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise NonFiniteLossError(
            f"generator loss term '{bad[0]}' is {values[bad[0]]} at step {step + 1} (epoch {epoch + 1}, batch {batch_index + 1}); "
            "lower the generator's learning_rate. The last checkpoint is kept."
        )


def _without_epochs(config: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(config))
    copy.get("training", {}).pop("epochs", None)
    return copy


def _format_terms(terms: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in sorted(terms.items()))
