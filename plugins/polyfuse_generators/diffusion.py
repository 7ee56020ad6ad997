"""The ``diffusion`` generator: a denoising diffusion model over the shared latent, with classifier-free guidance.

Training follows DDPM (Ho et al. 2020) with diffusers' ``DDPMScheduler``. Each row gets a
random timestep and noise added to its standardised target latent, and the network regresses
the velocity (or the noise, or the clean latent). The condition is the fused posterior of a
random subset of the record's modalities. It is dropped with probability
``condition_dropout``, so the same network also predicts unconditionally, and sampling mixes
the two predictions as ``uncond + guidance_scale * (cond - uncond)`` (classifier-free
guidance, Ho and Salimans 2022). Sampling uses DDIM or DPM-Solver++ from diffusers. Neither
sampler clips or thresholds samples, because latents are not bounded to [-1, 1].
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from polyfuse.config import require
from polyfuse.generation.latents import LatentBatch, LatentDataset, make_training_pairs
from polyfuse.generator import Condition, GenerationCancelled, Generator, StepCallback

from .conditioning import LatentGeneratorConfig, LatentNormalizer, condition_inputs
from .networks import Denoiser

logger = logging.getLogger(__name__)

SAMPLERS = ("ddim", "dpm")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class DiffusionConfig(LatentGeneratorConfig):
    """Settings of the diffusion generator."""

    hidden_dim: int = 256  # width of the denoiser's residual MLP
    num_layers: int = 4  # number of modulated residual blocks in the denoiser
    embedding_dim: int = 128  # width of the timestep and condition embeddings
    num_train_timesteps: int = 1000  # number of timesteps in the training noise schedule
    beta_schedule: str = "squaredcos_cap_v2"  # diffusers beta schedule: "linear", "scaled_linear" or "squaredcos_cap_v2"
    # What the denoiser predicts: "v_prediction", "epsilon" or "sample". The velocity keeps the
    # clean-latent estimate well conditioned at the last timesteps, where the noise prediction
    # of a cosine schedule divides by a signal scale near zero.
    prediction_type: str = "v_prediction"
    learning_rate: float = 1e-3  # AdamW step size
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip_norm: float = 1.0  # maximum global gradient norm, 0 turns clipping off
    ema_decay: float = 0.999  # decay of the exponential moving average of weights that sampling uses, 0 turns it off
    num_inference_steps: int = 50  # default denoising steps when sampling, in [1, num_train_timesteps]
    guidance_scale: float = 2.0  # default classifier-free guidance scale: 0 unconditional, 1 conditional, > 1 stronger
    sampler: str = "ddim"  # default sampler: "ddim" or "dpm" (DPM-Solver++, second order)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.hidden_dim > 0 and self.num_layers > 0 and self.embedding_dim > 0, "hidden_dim, num_layers and embedding_dim must be > 0")
        require(self.embedding_dim % 2 == 0, f"embedding_dim must be even for the sinusoidal timestep embedding, got {self.embedding_dim}")
        require(self.num_train_timesteps >= 2, f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        require(self.beta_schedule in BETA_SCHEDULES, f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, got {self.beta_schedule!r}")
        require(self.prediction_type in PREDICTION_TYPES, f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {self.prediction_type!r}")
        require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.grad_clip_norm >= 0, f"grad_clip_norm must be >= 0, got {self.grad_clip_norm}")
        require(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        check_num_inference_steps(self.num_inference_steps, self.num_train_timesteps)
        check_guidance_scale(self.guidance_scale)
        check_sampler(self.sampler)


class DiffusionGenerator(Generator):
    """Denoising diffusion over the standardised shared latent, conditioned on a fused posterior."""

    name = "diffusion"
    config_class = DiffusionConfig
    description = "denoising diffusion over the shared latent (DDPM training, DDIM or DPM-Solver++ sampling, classifier-free guidance)"
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig | None, latent_dim: int):
        super().__init__(config, latent_dim)
        config = self.config
        self.normalizer = LatentNormalizer(latent_dim)
        self.denoiser = Denoiser(latent_dim, config.hidden_dim, config.num_layers, config.embedding_dim)
        # The EMA copy is part of the state dict, so saved generators sample with the averaged weights.
        self.ema_denoiser = copy.deepcopy(self.denoiser).requires_grad_(False) if config.ema_decay > 0 else None
        self._training_scheduler: Any = None

    # -- training --------------------------------------------------------------

    def prepare(self, latents: LatentDataset) -> None:
        self.normalizer.fit(latents, self.config.sample_targets)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        return {"denoiser": torch.optim.AdamW(self.denoiser.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)}

    def training_step(
        self, batch: LatentBatch, optimizers: dict[str, torch.optim.Optimizer], generator: torch.Generator, step: int
    ) -> dict[str, float]:
        config = self.config
        scheduler = self.training_scheduler()
        pairs = make_training_pairs(batch, config.condition_dropout, generator, sample_targets=config.sample_targets)
        clean = self.normalizer.normalize(pairs.targets)
        device = clean.device

        # 1. Add noise at a random timestep per row, and pick the regression target.
        noise = torch.randn(clean.shape, generator=generator, device=device)
        timesteps = torch.randint(0, config.num_train_timesteps, (clean.shape[0],), generator=generator, device=device)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        if config.prediction_type == "epsilon":
            target = noise
        elif config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(clean, noise, timesteps)
        else:
            target = clean

        # 2. Regress the target, step the optimizer and update the weight average.
        mean = self.normalizer.normalize(pairs.condition_mean)
        logvar = self.normalizer.normalize_logvar(pairs.condition_logvar)
        prediction = self.denoiser(noisy, timesteps, mean, logvar, pairs.unconditional)
        loss = F.mse_loss(prediction, target)
        optimizer = optimizers["denoiser"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.denoiser.parameters(), config.grad_clip_norm)
        optimizer.step()
        self._update_ema(step)
        return {"loss": float(loss.detach())}

    def training_scheduler(self) -> Any:
        """Return the DDPM scheduler that defines the forward (noising) process."""
        if self._training_scheduler is None:
            from diffusers import DDPMScheduler

            self._training_scheduler = DDPMScheduler(**self._schedule_settings(), clip_sample=False, thresholding=False)
        return self._training_scheduler

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        if self.ema_denoiser is None:
            return
        # The warm-up decay (1 + step) / (10 + step) keeps early averages from retaining the random initialisation.
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))
        for average, current in zip(self.ema_denoiser.parameters(), self.denoiser.parameters()):
            average.lerp_(current, 1.0 - decay)

    # -- sampling --------------------------------------------------------------

    def default_sample_options(self) -> dict[str, Any]:
        config = self.config
        return {"num_inference_steps": config.num_inference_steps, "guidance_scale": config.guidance_scale, "sampler": config.sampler}

    def resolve_sample_options(self, **options: Any) -> dict[str, Any]:
        resolved = super().resolve_sample_options(**options)
        check_num_inference_steps(resolved["num_inference_steps"], self.config.num_train_timesteps)
        check_guidance_scale(resolved["guidance_scale"])
        check_sampler(resolved["sampler"])
        resolved["guidance_scale"] = float(resolved["guidance_scale"])
        return resolved

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
        """Denoise ``num_samples`` latents from Gaussian noise.

        Options are ``num_inference_steps`` (int in [1, num_train_timesteps]), ``guidance_scale``
        (float >= 0, used only with a condition) and ``sampler`` ("ddim" or "dpm"). Missing
        options take the config's defaults. Each step is reported to ``callback``, and
        ``GenerationCancelled`` is raised when the callback returns False.
        """
        from diffusers.utils.torch_utils import randn_tensor

        # 1. Check the inputs and set the sampler's timesteps.
        self.check_sample_inputs(num_samples, condition)
        options = self.resolve_sample_options(**options)
        device = self.normalizer.mean.device
        scheduler = self._sampling_scheduler(options["sampler"])
        scheduler.set_timesteps(options["num_inference_steps"], device=device)
        mean, logvar, unconditional = condition_inputs(self.normalizer, condition, num_samples, device)
        guidance_scale = options["guidance_scale"]
        guided = condition is not None and guidance_scale != 1.0
        network = self.ema_denoiser if self.ema_denoiser is not None else self.denoiser

        # 2. Run the reverse process and report each step.
        latents = randn_tensor((num_samples, self.latent_dim), generator=generator, device=device) * scheduler.init_noise_sigma
        total = len(scheduler.timesteps)
        for index, timestep in enumerate(scheduler.timesteps):
            model_input = scheduler.scale_model_input(latents, timestep)
            timesteps = timestep.expand(num_samples)
            if guided:
                # One pass over [conditional rows; unconditional rows] gives both predictions.
                both = network(
                    torch.cat([model_input, model_input]),
                    torch.cat([timesteps, timesteps]),
                    torch.cat([mean, mean]),
                    torch.cat([logvar, logvar]),
                    torch.cat([unconditional, torch.ones_like(unconditional)]),
                )
                conditional_prediction, unconditional_prediction = both.chunk(2)
                prediction = unconditional_prediction + guidance_scale * (conditional_prediction - unconditional_prediction)
            else:
                prediction = network(model_input, timesteps, mean, logvar, unconditional)
            latents = scheduler.step(prediction, timestep, latents, generator=generator).prev_sample
            if callback is not None and callback(index + 1, total) is False:
                raise GenerationCancelled(index + 1, total)

        # 3. Map the latents back to the VAE's latent space.
        return self.normalizer.denormalize(latents)

    def _sampling_scheduler(self, sampler: str) -> Any:
        # A fresh scheduler per call, because diffusers schedulers keep per-run state (timesteps, step index).
        settings = self._schedule_settings()
        if sampler == "ddim":
            from diffusers import DDIMScheduler

            # Trailing spacing starts at the last training timestep, so even one step begins from pure noise.
            return DDIMScheduler(**settings, clip_sample=False, thresholding=False, set_alpha_to_one=True, timestep_spacing="trailing")
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(
            **settings, algorithm_type="dpmsolver++", solver_order=2, thresholding=False, timestep_spacing="trailing"
        )

    def _schedule_settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "num_train_timesteps": config.num_train_timesteps,
            "beta_schedule": config.beta_schedule,
            "prediction_type": config.prediction_type,
        }


def check_num_inference_steps(value: Any, num_train_timesteps: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer in [1, ``num_train_timesteps``]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"num_inference_steps must be an integer in [1, {num_train_timesteps}], got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {value}; pass a value in [1, {num_train_timesteps}]")
    if value > num_train_timesteps:
        raise ValueError(
            f"num_inference_steps is {value}, more than the {num_train_timesteps} timesteps this generator was trained with; "
            f"pass a value in [1, {num_train_timesteps}]"
        )


def check_guidance_scale(value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"guidance_scale must be a finite number >= 0 (0 unconditional, 1 conditional, > 1 stronger), got {value!r}")


def check_sampler(value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is one of :data:`SAMPLERS`."""
    if value not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {value!r}")
