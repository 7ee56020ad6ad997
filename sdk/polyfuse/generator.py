"""The generator contract: models that produce latents in the shared space.

A generator plugin subclasses :class:`Generator` and registers it through the
``register_generators`` hook. It is fitted on a trained multimodal model (whose encoders
give the latents and the conditions) and then samples latents, unconditionally or
conditioned on the fused posterior of any subset of modalities; the model's decoders turn
those latents into data.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from .config import config_from_dict, config_to_dict

if TYPE_CHECKING:
    from .data.dataset import PreparedDataset
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


# Called after each sampling step with (step, total_steps); returning False cancels sampling.
StepCallback = Callable[[int, int], bool | None]


class Generator(nn.Module, abc.ABC):
    """Base class of latent generators (VAE prior, GAN, diffusion)."""

    name: ClassVar[str]
    config_class: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    description: ClassVar[str] = ""

    def __init__(self, config: GeneratorConfig | None, latent_dim: int):
        super().__init__()
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.latent_dim = latent_dim

    @abc.abstractmethod
    def fit(self, model: MultimodalVAE, dataset: PreparedDataset, **options: Any) -> Any:
        """Train on the latents and conditions that ``model`` gives for ``dataset``."""

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
        """Return latents (num_samples, latent_dim); with ``condition`` its rows match the samples."""

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.config)

    @classmethod
    def from_config_dict(cls, data: dict[str, Any], latent_dim: int, where: str = "config") -> Generator:
        return cls(config_from_dict(cls.config_class, data, where), latent_dim)
