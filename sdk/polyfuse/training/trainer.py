"""The training loop: shuffled batches, the objective, clipping, logging and checkpoints.

Batch order is a function of the seed and the epoch alone, so a run resumed from a
checkpoint sees the same batches it would have seen without the interruption.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.dataset import PreparedDataset, SkippedRecord
from ..errors import NonFiniteLossError
from ..model import MultimodalVAE
from ..objective import LossTerms, ObjectiveWeights, compute_loss
from ..progress import progress_bar
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .config import TrainingConfig

logger = logging.getLogger(__name__)

StepCallback = Callable[[TrainingState, dict[str, float]], None]


@dataclass
class TrainOutput:
    """Result of :meth:`Trainer.fit`."""

    model: MultimodalVAE
    history: list[dict[str, float]]  # mean loss terms per epoch
    steps: int
    resumed_from_step: int | None  # None when the run started from scratch
    seconds: float  # wall time of this call, excluding data loading
    samples_per_second: float  # records per second over the steps of this call
    skipped: list[SkippedRecord] = field(default_factory=list)
    total_seconds: float = 0.0  # wall time of every call that trained this run, resumed ones included


class Trainer:
    """Trains a :class:`MultimodalVAE` on a prepared data set, with optional checkpoints."""

    def __init__(
        self,
        model: MultimodalVAE,
        dataset: PreparedDataset,
        config: TrainingConfig,
        *,
        checkpoint_path: str | Path | None = None,
        run_config: dict[str, Any] | None = None,
        on_step: StepCallback | None = None,
        progress: bool = True,
    ):
        if len(dataset) == 0:
            raise ValueError("the training set is empty; check the manifest and the --modalities option")
        self.model = model
        self.dataset = dataset
        self.config = config
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.run_config = run_config or {}
        self.on_step = on_step
        self.progress = progress
        self.device = torch.device(config.device)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.dataset) / self.config.batch_size)

    def fit(self, resume: bool = True) -> TrainOutput:
        """Train until ``config.epochs`` are done, resuming from the checkpoint when asked and present."""
        config = self.config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.model.to(self.device)
        state, resumed_from = self._initial_state(resume)
        started, first_step, earlier_seconds = time.perf_counter(), state.step, state.seconds

        for epoch in range(state.epoch, config.epochs):
            self._train_epoch(epoch, state)
            state.epoch, state.batch = epoch + 1, 0
            state.seconds = earlier_seconds + time.perf_counter() - started
            self._save(state)

        state.finished = True
        state.seconds = earlier_seconds + time.perf_counter() - started
        self._save(state)
        seconds = time.perf_counter() - started
        samples = (state.step - first_step) * config.batch_size
        self.model.eval()
        return TrainOutput(
            model=self.model,
            history=state.history,
            steps=state.step,
            resumed_from_step=resumed_from,
            seconds=seconds,
            samples_per_second=min(samples, len(self.dataset) * config.epochs) / seconds if seconds > 0 else 0.0,
            skipped=list(self.dataset.skipped),
            total_seconds=state.seconds,
        )

    def _initial_state(self, resume: bool) -> tuple[TrainingState, int | None]:
        path = self.checkpoint_path
        if resume and path is not None and path.exists():
            state = load_checkpoint(path, self.model, self.optimizer, self.generator)
            logger.info("Resuming from %s at epoch %d, batch %d (step %d)", path, state.epoch + 1, state.batch, state.step)
            return state, state.step
        return TrainingState(), None

    def _train_epoch(self, epoch: int, state: TrainingState) -> None:
        config = self.config
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        sums: dict[str, float] = dict(state.history[epoch]) if len(state.history) > epoch else {}
        count = int(sums.pop("_batches", 0))
        bar = progress_bar(total=self.batches_per_epoch, desc=f"Epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not self.progress)
        bar.update(state.batch)
        self.model.train()
        for batch_index in range(state.batch, self.batches_per_epoch):
            indices = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size].tolist()
            loss = self._step(indices, state.step)
            self._check_finite(loss, state.step, epoch, batch_index)
            state.step += 1
            state.batch = batch_index + 1
            values = {name: float(value.detach()) for name, value in loss.terms.items()}
            values["loss"] = float(loss.total.detach())
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            self._record_partial_epoch(state, epoch, sums, count)
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.2f}")
            if state.step % config.log_every == 0:
                logger.info("step %d epoch %d loss %.4f", state.step, epoch + 1, values["loss"])
            if self.on_step is not None:
                self.on_step(state, values)
            if state.step % config.checkpoint_every == 0:
                self._save(state)
        bar.close()
        state.history[epoch] = {name: value / max(count, 1) for name, value in sums.items()}
        logger.info("epoch %d done: %s", epoch + 1, _format_terms(state.history[epoch]))

    def _step(self, indices: list[int], step: int) -> LossTerms:
        config = self.config
        batch = self.dataset.batch(indices, self.model.modalities)
        batch = {name: value.to(self.device) for name, value in batch.items()}
        if config.augment:
            batch = {name: self.model.modalities[name].augment(value, self.generator) for name, value in batch.items()}
        weights = ObjectiveWeights(
            beta=config.beta_at(step),
            alignment_weight=config.alignment_weight,
            alignment_temperature=config.alignment_temperature,
            modality_dropout=config.modality_dropout,
        )
        loss = compute_loss(self.model, batch, weights, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss.total):
            loss.total.backward()
            if config.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip_norm)
            self.optimizer.step()
        return loss

    def _check_finite(self, loss: LossTerms, step: int, epoch: int, batch_index: int) -> None:
        if torch.isfinite(loss.total):
            return
        bad = [name for name, value in loss.terms.items() if not torch.isfinite(value)]
        name = bad[0] if bad else "total"
        value = float(loss.terms[name].detach()) if bad else float(loss.total.detach())
        modality = name.split("/", 1)[1] if name.startswith("nll/") else None
        where = f" (modality '{modality}')" if modality else ""
        hint = f"check the '{modality}' inputs for NaN or infinite values, " if modality else ""
        raise NonFiniteLossError(
            f"loss term '{name}'{where} is {value} at step {step + 1} (epoch {epoch + 1}, batch {batch_index + 1}); "
            f"{hint}lower learning_rate or raise kl_warmup_steps. The last checkpoint is kept."
        )

    @staticmethod
    def _record_partial_epoch(state: TrainingState, epoch: int, sums: dict[str, float], count: int) -> None:
        # Running sums live in the history so a checkpoint mid-epoch keeps them.
        partial = dict(sums, _batches=float(count))
        if len(state.history) > epoch:
            state.history[epoch] = partial
        else:
            state.history.append(partial)

    def _save(self, state: TrainingState) -> None:
        if self.checkpoint_path is not None:
            save_checkpoint(self.checkpoint_path, self.model, self.optimizer, state, self.generator, self.run_config)


def _format_terms(terms: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.3f}" for name, value in sorted(terms.items()))
