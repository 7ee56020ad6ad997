"""Cross-modal generation: sample latents with a generator, conditioned on any subset of modalities, and decode them.

:class:`GenerationPipeline` pairs a model with one of its generators::

    pipeline = GenerationPipeline.from_pretrained("runs/model", generator="diffusion")
    output = pipeline({"audio": "clip.wav"}, targets=["image"], num_samples=8, seed=0)
    images = output.values(pipeline.model, "image")  # PIL images

The same seed (or a ``torch.Generator`` in the same state) on the same machine gives the
same output. A step callback that returns False stops sampling with
:class:`~polyfuse.generator.GenerationCancelled`, which records how many steps were done.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from ..generator import Condition, Generator, StepCallback
from ..modality import ModalityBatch
from ..model import MultimodalVAE
from .conditions import encode_condition
from .store import resolve_generator

logger = logging.getLogger(__name__)

# Seeds drawn when the caller gives none are below 2**63, so they fit torch's int64 seed.
_MAX_SEED = 2**63 - 1


@dataclass
class GenerationOutput:
    """Samples of one generation call."""

    latents: torch.Tensor  # (N, D) sampled latents
    outputs: dict[str, ModalityBatch]  # per target field, decoded data in the modality's preprocessed space
    generator: str  # name of the generator (its folder name, or its type when nothing was trained)
    generator_type: str  # registered type of the generator
    condition_fields: tuple[str, ...]  # fields conditioned on, empty for unconditional samples
    seed: int | None  # seed of the random generator, None when the caller passed a torch.Generator
    options: dict[str, Any]  # sampling options after defaults were filled in
    steps: int  # sampling steps actually run
    temperature: float  # decoder temperature, 0 for the most likely output
    model_fingerprint: str | None  # sha256 of the model weights
    seconds: float  # wall time of sampling and decoding
    extra: dict[str, Any] = field(default_factory=dict)  # what a caller wants recorded beside the samples

    @property
    def num_samples(self) -> int:
        return int(self.latents.shape[0])

    def values(self, model: MultimodalVAE, field_name: str) -> list[Any]:
        """Return the native values (images, clips, series, strings) of one target field, via ``Modality.postprocess``."""
        if field_name not in self.outputs:
            raise KeyError(f"no output for field '{field_name}'; generated fields: {', '.join(self.outputs)}")
        batch = self.outputs[field_name]
        modality = model.modalities[field_name]
        lengths = batch.lengths.tolist() if batch.lengths is not None else [None] * batch.batch_size
        return [modality.postprocess(batch.data[row], lengths[row]) for row in range(batch.batch_size)]


@dataclass
class LatentSamples:
    """Latents sampled by :meth:`GenerationPipeline.sample_latents`."""

    latents: torch.Tensor  # (N, D)
    condition_fields: tuple[str, ...]  # fields conditioned on, empty for unconditional samples
    options: dict[str, Any]  # sampling options after defaults were filled in
    steps: int  # sampling steps actually run


class GenerationPipeline:
    """A model and a generator that samples its shared latent."""

    def __init__(self, model: MultimodalVAE, generator: Generator, name: str | None = None):
        if generator.latent_dim != model.latent_dim:
            raise ValueError(
                f"generator '{generator.name}' samples latents of dimension {generator.latent_dim}, "
                f"but the model's latent_dim is {model.latent_dim}; use a generator fitted on this model"
            )
        self.model = model.eval()
        self.generator = generator.to(model.device).eval()
        self.name = name or generator.name

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, generator: str = "vae", device: str | torch.device = "cpu") -> GenerationPipeline:
        """Load the model in ``model_dir`` and its generator ``generator`` (a saved name, or an untrained type such as "vae")."""
        model = MultimodalVAE.from_pretrained(model_dir, device=device)
        loaded = resolve_generator(model_dir, generator, model.latent_dim, fingerprint=model.fingerprint, device=device)
        return cls(model, loaded, generator)

    def encode_condition(self, inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]], base_dir: str | Path | None = None) -> Condition:
        """Encode one record or several (dicts of field to value) into a condition, one row per record."""
        return encode_condition(self.model, inputs, base_dir=base_dir)

    @torch.no_grad()
    def __call__(
        self,
        inputs: Mapping[str, Any] | Condition | None = None,
        *,
        targets: Iterable[str] | None = None,
        num_samples: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        temperature: float = 0.0,
        base_dir: str | Path | None = None,
        **sample_options: Any,
    ) -> GenerationOutput:
        """Generate ``num_samples`` samples of each target field (default: every field of the model).

        ``inputs`` is one record (a dict of field to value) whose condition every sample
        shares, a :class:`Condition` with one row or ``num_samples`` rows, or ``None`` for
        unconditional samples. Pass ``seed`` or ``generator``, not both; without either a
        seed is drawn and recorded in the output. ``sample_options`` go to the generator
        (for diffusion: ``num_inference_steps``, ``guidance_scale``, ``sampler``).
        """
        started = time.perf_counter()
        target_fields = self.model.fields if targets is None else self.model.check_fields(targets)
        if not target_fields:
            raise ValueError(f"targets is empty; name at least one of {', '.join(self.model.fields)}, or pass None for all")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 decodes the most likely output), got {temperature!r}")
        random_generator, seed = _random_generator(seed, generator, self.model.device)

        samples = self.sample_latents(
            inputs, num_samples=num_samples, generator=random_generator, callback=callback, base_dir=base_dir, **sample_options
        )
        outputs = self.model.decode(samples.latents, target_fields, temperature=temperature, generator=random_generator)
        seconds = time.perf_counter() - started
        logger.debug("Generated %d samples of %s in %.3f s", num_samples, ", ".join(target_fields), seconds)
        return GenerationOutput(
            latents=samples.latents,
            outputs=outputs,
            generator=self.name,
            generator_type=self.generator.name,
            condition_fields=samples.condition_fields,
            seed=seed,
            options=samples.options,
            steps=samples.steps,
            temperature=float(temperature),
            model_fingerprint=self.model.fingerprint,
            seconds=seconds,
        )

    @torch.no_grad()
    def sample_latents(
        self,
        inputs: Mapping[str, Any] | Condition | None = None,
        *,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        base_dir: str | Path | None = None,
        **sample_options: Any,
    ) -> LatentSamples:
        """Sample latents without decoding them; the arguments mean what they mean for :meth:`__call__`."""
        # 1. Check every argument before any work.
        self.generator.check_sample_inputs(num_samples, None)
        options = self.generator.resolve_sample_options(**sample_options)

        # 2. The condition, one row per sample.
        condition = self._condition(inputs, num_samples, base_dir)

        # 3. Latents, counting the steps that the generator reports.
        counter = _StepCounter(callback)
        latents = self.generator.sample(num_samples, condition, generator=generator, callback=counter, **options)
        return LatentSamples(latents, condition.fields if condition is not None else (), options, counter.steps)

    def _condition(self, inputs: Mapping[str, Any] | Condition | None, num_samples: int, base_dir: str | Path | None) -> Condition | None:
        if inputs is None:
            return None
        if isinstance(inputs, Condition):
            condition = inputs
        elif isinstance(inputs, Mapping):
            if not inputs:
                return None
            condition = self.encode_condition(inputs, base_dir)
        else:
            raise TypeError(f"inputs must be a dict of field to value, a Condition or None, got {type(inputs).__name__}")
        if condition.num_rows == 1 and num_samples > 1:
            return condition.repeat(num_samples)
        if condition.num_rows != num_samples:
            raise ValueError(f"the condition has {condition.num_rows} rows; give 1 row or num_samples ({num_samples}) rows")
        return condition


class _StepCounter:
    """Forwards step reports to the caller's callback and remembers the last step reported."""

    def __init__(self, callback: StepCallback | None):
        self.callback = callback
        self.steps = 0

    def __call__(self, step: int, total_steps: int) -> bool | None:
        self.steps = step
        return None if self.callback is None else self.callback(step, total_steps)


def _random_generator(seed: int | None, generator: torch.Generator | None, device: torch.device) -> tuple[torch.Generator, int | None]:
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator, None
    if seed is None:
        seed = random.SystemRandom().randrange(_MAX_SEED)
        logger.info("No seed given; drew seed %d", seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {_MAX_SEED}], got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed), seed
