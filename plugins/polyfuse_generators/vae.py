"""The ``vae`` generator: the VAE's own prior and posteriors, with nothing to fit.

Unconditional samples come from the prior N(0, I). Conditional ones come from the fused
posterior of the given modalities, drawn or taken at its mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polyfuse.config import require
from polyfuse.generator import Condition, GenerationCancelled, Generator, GeneratorConfig, StepCallback

POSTERIOR_MODES = ("sample", "mean")


@dataclass(frozen=True)
class VAEPriorConfig(GeneratorConfig):
    """Settings of the VAE prior generator."""

    posterior: str = "sample"  # conditional latents: "sample" draws from the fused posterior, and "mean" takes its mean

    def __post_init__(self) -> None:
        require(self.posterior in POSTERIOR_MODES, f"posterior must be one of {', '.join(POSTERIOR_MODES)}, got {self.posterior!r}")


class VAEPriorGenerator(Generator):
    """Generator that samples the prior N(0, I), or the fused posterior of the conditioning modalities."""

    name = "vae"
    config_class = VAEPriorConfig
    description = "the VAE's prior N(0, I) for unconditional samples and its fused posterior for conditional ones"
    trainable = False
    config: VAEPriorConfig

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        condition: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Draw ``num_samples`` latents in one step and report it to ``callback`` as step 1 of 1.

        Raises ``GenerationCancelled`` if the callback returns False.
        """
        self.check_sample_inputs(num_samples, condition)
        self.resolve_sample_options(**options)
        if condition is None:
            device = generator.device if generator is not None else torch.device("cpu")
            latents = torch.randn(num_samples, self.latent_dim, generator=generator, device=device)
        elif self.config.posterior == "mean":
            latents = condition.posterior.mean
        else:
            latents = condition.posterior.sample(generator)
        if callback is not None and callback(1, 1) is False:
            raise GenerationCancelled(1, 1)
        return latents
