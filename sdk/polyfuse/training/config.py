"""Training settings, and the run config file that ``polyfuse train --config`` reads.

A run config is a JSON object with three optional sections::

    {
      "model": {"latent_dim": 32, "fusion": "mopoe"},
      "training": {"epochs": 30, "batch_size": 128},
      "modalities": {"image": {"size": [28, 28], "channels": 1},
                     "caption": {"type": "text", "max_length": 64}}
    }

Each entry of ``modalities`` is a modality field; ``type`` names the modality plugin and
defaults to the field name, and the other keys are that plugin's config fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import config_from_dict, config_to_dict, load_config_file, require
from ..errors import ConfigError
from ..model import ModelConfig
from ..modality import Modality


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation, objective weights and checkpointing of one training run."""

    epochs: int = 30  # passes over the training records
    batch_size: int = 128  # records per step
    learning_rate: float = 1e-3  # AdamW step size
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    beta: float = 1.0  # weight of the KL term after warm-up
    kl_warmup_steps: int = 500  # steps over which the KL weight rises linearly from 0 to beta
    # Weight of the InfoNCE alignment of paired experts, 0 turns it off. Log-likelihoods are
    # sums over hundreds to thousands of elements, so alignment needs a weight of this order.
    alignment_weight: float = 20.0
    alignment_temperature: float = 0.1  # softmax temperature of the alignment loss, > 0
    modality_dropout: float = 0.5  # probability of hiding each present modality from the posterior, in [0, 1)
    grad_clip_norm: float = 5.0  # maximum global gradient norm, 0 turns clipping off
    augment: bool = True  # apply each modality's training augmentation
    seed: int = 0  # seeds initialisation, shuffling, sampling and augmentation
    checkpoint_every: int = 200  # steps between checkpoints; also written at the end of every epoch
    log_every: int = 50  # steps between log lines
    num_threads: int = 0  # torch CPU threads, 0 keeps torch's default
    device: str = "cpu"  # torch device, for example "cpu" or "cuda"

    def __post_init__(self) -> None:
        require(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        require(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        require(self.kl_warmup_steps >= 0, f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        require(self.alignment_weight >= 0, f"alignment_weight must be >= 0, got {self.alignment_weight}")
        require(self.alignment_temperature > 0, f"alignment_temperature must be > 0, got {self.alignment_temperature}")
        require(0 <= self.modality_dropout < 1, f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        require(self.grad_clip_norm >= 0, f"grad_clip_norm must be >= 0, got {self.grad_clip_norm}")
        require(self.checkpoint_every > 0, f"checkpoint_every must be > 0, got {self.checkpoint_every}")
        require(self.log_every > 0, f"log_every must be > 0, got {self.log_every}")
        require(self.num_threads >= 0, f"num_threads must be >= 0, got {self.num_threads}")

    def beta_at(self, step: int) -> float:
        """Return the KL weight at ``step`` (0-based) under the linear warm-up."""
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup_steps)


@dataclass(frozen=True)
class ModalitySpec:
    """One modality field of a run: the plugin type and its config values as given."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``polyfuse train`` needs besides the data."""

    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    modalities: Mapping[str, ModalitySpec] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        modalities = {name: {"type": spec.type, **spec.options} for name, spec in self.modalities.items()}
        return {"model": config_to_dict(self.model), "training": config_to_dict(self.training), "modalities": modalities}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> RunConfig:
        unknown = sorted(set(data) - {"model", "training", "modalities"})
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; known: model, training, modalities")
        model = config_from_dict(ModelConfig, dict(data.get("model", {})), f"{where} 'model'")
        training = config_from_dict(TrainingConfig, dict(data.get("training", {})), f"{where} 'training'")
        modalities = {}
        for name, options in dict(data.get("modalities", {})).items():
            if not isinstance(options, Mapping):
                raise ConfigError(f"{where} 'modalities.{name}': expected an object, got {type(options).__name__}")
            options = dict(options)
            modalities[name] = ModalitySpec(str(options.pop("type", name)), options)
        return cls(model, training, modalities)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(load_config_file(path), str(path))

    def with_training(self, **changes: Any) -> RunConfig:
        """Return a copy with training fields replaced; ``None`` values are ignored."""
        changes = {key: value for key, value in changes.items() if value is not None}
        try:
            training = dataclasses.replace(self.training, **changes)
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from error
        return dataclasses.replace(self, training=training)

    def select_fields(self, fields: Iterable[str]) -> RunConfig:
        """Return a copy whose modalities are exactly ``fields``; unlisted fields use plugin defaults."""
        modalities = {name: self.modalities.get(name, ModalitySpec(name)) for name in fields}
        return dataclasses.replace(self, modalities=modalities)

    def build_modalities(self) -> dict[str, Modality]:
        """Instantiate each modality plugin with its config."""
        from ..plugins import get_host

        registry = get_host().modalities
        built: dict[str, Modality] = {}
        for name, spec in self.modalities.items():
            modality_class = registry.get(spec.type)
            built[name] = modality_class.from_config_dict(dict(spec.options), field=name, where=f"modalities.{name}")
        return built
