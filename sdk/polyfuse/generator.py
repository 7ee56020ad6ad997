"""The generator contract: models that produce latents in the shared space.

A generator plugin subclasses :class:`Generator` and registers it through the
``register_generators`` hook. It is fitted on a trained multimodal model (whose encoders
give the latents and the conditions) and then samples latents, unconditionally or
conditioned on the fused posterior of any subset of modalities; the model's decoders turn
those latents into data.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from .config import config_from_dict, config_to_dict
from .errors import PolyfuseError

if TYPE_CHECKING:
    from .data.dataset import PreparedDataset
    from .generation.latents import LatentBatch, LatentDataset
    from .generation.training import GeneratorTrainingConfig
    from .model import MultimodalVAE
    from .posterior import DiagonalGaussian, GaussianMixture


@dataclass(frozen=True)
class GeneratorConfig:
    """Base class of generator configs; plugins subclass it with their own fields."""


@dataclass
class Condition:
    """What to condition on: the fused posterior of the given modalities, one row per sample."""

    posterior: DiagonalGaussian | GaussianMixture
    fields: tuple[str, ...]  # the modality fields the posterior was computed from

    @property
    def num_rows(self) -> int:
        return int(self.posterior.mean.shape[0])

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior ``mean`` and ``logvar`` (B, D) that conditional networks read.

        A mixture contributes its overall mean and total variance.
        """
        return self.posterior.mean, self.posterior.logvar

    def repeat(self, count: int) -> Condition:
        """Return the condition with every row repeated ``count`` times in place: row i becomes rows i*count to i*count+count-1."""
        from .posterior import DiagonalGaussian, GaussianMixture

        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an integer >= 1, got {count!r}")
        posterior = self.posterior
        if isinstance(posterior, GaussianMixture):
            repeated: DiagonalGaussian | GaussianMixture = GaussianMixture(
                posterior.means.repeat_interleave(count, dim=0),
                posterior.logvars.repeat_interleave(count, dim=0),
                posterior.weights.repeat_interleave(count, dim=0),
            )
        else:
            repeated = DiagonalGaussian(posterior.mean.repeat_interleave(count, dim=0), posterior.logvar.repeat_interleave(count, dim=0))
        return Condition(repeated, self.fields)


# Called after each sampling step with (step, total_steps); returning False cancels sampling.
StepCallback = Callable[[int, int], bool | None]


class GenerationCancelled(PolyfuseError):
    """A :data:`StepCallback` returned False, so sampling stopped before its last step."""

    def __init__(self, completed_steps: int, total_steps: int):
        self.completed_steps = completed_steps
        self.total_steps = total_steps
        super().__init__(f"generation cancelled by the step callback after step {completed_steps} of {total_steps}")


@dataclass
class FitOutput:
    """Result of :meth:`Generator.fit`."""

    history: list[dict[str, float]]  # mean training terms per finished epoch
    steps: int  # optimizer steps taken in all, resumed ones included
    resumed_from_step: int | None  # None when the run started from scratch
    seconds: float  # wall time of this call
    diagnostics: dict[str, Any] = field(default_factory=dict)  # measured after fitting, for example mode coverage


class Generator(nn.Module, abc.ABC):
    """Base class of latent generators (VAE prior, GAN, diffusion).

    A trainable generator implements :meth:`configure_optimizers` and :meth:`training_step`;
    the default :meth:`fit` encodes the data set once with the model and runs
    :class:`polyfuse.generation.training.GeneratorTrainer`, which handles batching,
    checkpoints and resuming. A generator with nothing to learn sets ``trainable = False``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    description: ClassVar[str] = ""
    trainable: ClassVar[bool] = True

    def __init__(self, config: GeneratorConfig | None, latent_dim: int):
        super().__init__()
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
        self.config = config
        self.latent_dim = latent_dim

    # -- fitting ---------------------------------------------------------------

    def fit(
        self,
        model: MultimodalVAE,
        dataset: PreparedDataset,
        *,
        training: GeneratorTrainingConfig | None = None,
        checkpoint_path: str | Path | None = None,
        run_config: dict[str, Any] | None = None,
        resume: bool = True,
        progress: bool = True,
        on_step: Callable[[Any, dict[str, float]], None] | None = None,
    ) -> FitOutput:
        """Train on the latents and conditions that ``model`` gives for ``dataset``.

        With ``checkpoint_path`` a checkpoint is written every ``training.checkpoint_every``
        steps and at the end of each epoch, and a later call with ``resume`` continues from it.
        """
        from .generation.latents import encode_latent_dataset
        from .generation.training import GeneratorTrainer, GeneratorTrainingConfig

        training = training or GeneratorTrainingConfig()
        if not self.trainable:
            return FitOutput(history=[], steps=0, resumed_from_step=None, seconds=0.0)
        latents = encode_latent_dataset(model, dataset, device=training.device, progress=progress)
        trainer = GeneratorTrainer(
            self, latents, training, checkpoint_path=checkpoint_path, run_config=run_config, on_step=on_step, progress=progress
        )
        return trainer.fit(resume=resume)

    def prepare(self, latents: LatentDataset) -> None:
        """Set statistics of the training latents (for example normalisation) before the first step."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Return the optimizers by name; their states are saved in every checkpoint."""
        raise NotImplementedError(f"generator '{self.name}' is trainable but does not implement configure_optimizers")

    def training_step(
        self, batch: LatentBatch, optimizers: dict[str, torch.optim.Optimizer], generator: torch.Generator, step: int
    ) -> dict[str, float]:
        """Run one optimisation step on ``batch`` and return its named loss terms.

        All randomness must come from ``generator``, so a resumed run repeats the same steps.
        """
        raise NotImplementedError(f"generator '{self.name}' is trainable but does not implement training_step")

    def diagnose(self, latents: LatentDataset, generator: torch.Generator) -> dict[str, Any]:
        """Return measurements taken after fitting (stored in :attr:`FitOutput.diagnostics`)."""
        return {}

    # -- sampling --------------------------------------------------------------

    @abc.abstractmethod
    def sample(
        self,
        num_samples: int,
        condition: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Return latents (num_samples, latent_dim); with ``condition`` its rows match the samples.

        Raises :class:`GenerationCancelled` when ``callback`` returns False.
        """

    def default_sample_options(self) -> dict[str, Any]:
        """Return the keyword options that :meth:`sample` accepts, with their default values."""
        return {}

    def resolve_sample_options(self, **options: Any) -> dict[str, Any]:
        """Return every option of :meth:`sample` with defaults filled in for missing or ``None`` ones.

        Unknown names raise ``TypeError`` listing the accepted ones; subclasses extend this
        to check values, so callers can validate before any work starts.
        """
        defaults = self.default_sample_options()
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            accepted = ", ".join(sorted(defaults)) or "none"
            raise TypeError(f"generator '{self.name}' does not accept option(s) {', '.join(unknown)}; accepted options: {accepted}")
        defaults.update({key: value for key, value in options.items() if value is not None})
        return defaults

    def check_sample_inputs(self, num_samples: int, condition: Condition | None) -> None:
        """Raise ``ValueError`` unless ``num_samples`` >= 1 and ``condition`` has that many rows of ``latent_dim``."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if condition is None:
            return
        if condition.num_rows != num_samples:
            raise ValueError(
                f"condition has {condition.num_rows} rows but num_samples is {num_samples}; "
                "give one condition row per sample (repeat a single condition with Condition.repeat)"
            )
        dim = condition.posterior.mean.shape[-1]
        if dim != self.latent_dim:
            raise ValueError(f"condition posterior has latent_dim {dim}, but this generator was built for {self.latent_dim}")

    # -- configuration ---------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.config)

    @classmethod
    def from_config_dict(cls, data: dict[str, Any], latent_dim: int, where: str = "config") -> Generator:
        return cls(config_from_dict(cls.config_class, data, where), latent_dim)
