"""Generation back end of a creative tool: a trained model and its generator, loaded once and shared by all calls.

A host application (a desktop editor, a plugin for a drawing program) creates one
:class:`SoundAndImageStudio` at start-up and calls :meth:`~SoundAndImageStudio.image_from`,
:meth:`~SoundAndImageStudio.sound_from` or :meth:`~SoundAndImageStudio.caption_from` from a
worker thread. Each call reports its sampling steps through ``on_progress`` and stops early
when the ``cancel`` event that the UI owns is set.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from polyfuse import GenerationCancelled, GenerationOutput, GenerationPipeline
from polyfuse.generation import WrittenSamples, save_generation

logger = logging.getLogger(__name__)

# Progress callback, called on the generating thread after each sampling step with (step, total_steps).
ProgressCallback = Callable[[int, int], None]


@dataclass
class Creation:
    """Result of one studio call: the generated values, or the progress made before cancellation."""

    target: str  # modality field that was generated
    inputs: dict[str, Any]  # field -> conditioning value, as the caller passed it
    values: list[Any]  # one generated value per sample (PIL image, audio clip, string), empty when cancelled
    cancelled: bool  # True when the cancel event stopped sampling
    # Sampling steps run. One-pass generators such as "vae" and "gan" report one step, and a call
    # cancelled before it started reports 0.
    completed_steps: int
    total_steps: int  # sampling steps of the full call as the generator reported them, 0 if cancelled before start
    seed: int | None  # seed of the call, which reproduces the same samples
    seconds: float  # wall time of the call in seconds, including any wait for another call to finish
    output: GenerationOutput | None = None  # full pipeline output, None when cancelled


class SoundAndImageStudio:
    """Generator of images, sounds and captions from any subset of a model's other modalities.

    The modality fields are the ones that the built-in recipes use: ``image``, ``audio`` and
    ``text``. A call whose target or inputs are not fields of the model raises ``ValueError``
    that lists the model's fields.
    """

    def __init__(self, pipeline: GenerationPipeline, *, num_inference_steps: int | None = None, guidance_scale: float | None = None):
        self.pipeline = pipeline
        # Only options that the generator accepts are passed on, so the same studio code works
        # with one-pass generators (the "vae" prior, "gan") as well as with diffusion.
        accepted = pipeline.generator.default_sample_options()
        requested = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
        self.sample_options = {name: value for name, value in requested.items() if value is not None and name in accepted}
        # Validate the options now, at start-up, instead of on the first request.
        pipeline.generator.resolve_sample_options(**self.sample_options)
        # Calls from several threads sample one at a time, so two generations never compete
        # for the same CPU threads.
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        generator: str = "diffusion",
        device: str = "cpu",
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> SoundAndImageStudio:
        """Load the model in ``model_dir`` with its saved generator named ``generator``, and create the studio.

        Raises ``ValueError`` if ``num_inference_steps`` or ``guidance_scale`` is invalid for the generator.
        """
        pipeline = GenerationPipeline.from_pretrained(model_dir, generator=generator, device=device)
        logger.info("Studio loaded model %s with generator %s (fields: %s)", model_dir, generator, ", ".join(pipeline.model.fields))
        return cls(pipeline, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)

    @property
    def fields(self) -> tuple[str, ...]:
        """Modality fields of the loaded model."""
        return self.pipeline.model.fields

    def image_from(
        self,
        *,
        text: str | None = None,
        audio: Any = None,
        num_samples: int = 1,
        seed: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Creation:
        """Generate images from a caption, a sound, or both fused.

        ``audio`` is a file path or a waveform that the model's audio modality accepts.
        """
        return self.create("image", {"text": text, "audio": audio}, num_samples=num_samples, seed=seed, on_progress=on_progress, cancel=cancel)

    def sound_from(
        self,
        *,
        text: str | None = None,
        image: Any = None,
        num_samples: int = 1,
        seed: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Creation:
        """Generate audio clips from a caption, an image (a file path or a PIL image), or both fused."""
        return self.create("audio", {"text": text, "image": image}, num_samples=num_samples, seed=seed, on_progress=on_progress, cancel=cancel)

    def caption_from(
        self,
        *,
        image: Any = None,
        audio: Any = None,
        num_samples: int = 1,
        seed: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Creation:
        """Generate captions from an image, a sound, or both fused."""
        return self.create("text", {"image": image, "audio": audio}, num_samples=num_samples, seed=seed, on_progress=on_progress, cancel=cancel)

    def create(
        self,
        target: str,
        inputs: Mapping[str, Any],
        *,
        num_samples: int = 1,
        seed: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Creation:
        """Generate ``num_samples`` values of ``target`` from the inputs that are not None.

        When the ``cancel`` event is set, sampling stops after the current step and the call
        returns a :class:`Creation` with ``cancelled`` set and no values. Cancellation does not
        raise. An invalid target or inputs raise ``ValueError`` before any work starts, and
        errors of the pipeline propagate.
        """
        # 1. Validate the request before any work.
        given = {name: value for name, value in inputs.items() if value is not None}
        self._check_fields(target, given, tuple(inputs))
        started = time.perf_counter()
        if cancel is not None and cancel.is_set():
            logger.info("Skipped %s generation: it was cancelled before it started", target)
            return Creation(target, given, [], True, 0, 0, seed, 0.0)

        # 2. Sample, report each step and check the cancel event between steps.
        steps = _StepTracker(on_progress, cancel)
        with self._lock:
            try:
                output = self.pipeline(
                    given, targets=[target], num_samples=num_samples, seed=seed, callback=steps, **self.sample_options
                )
            except GenerationCancelled as cancelled:
                logger.info("Cancelled %s generation after step %d of %d", target, cancelled.completed_steps, cancelled.total_steps)
                seconds = time.perf_counter() - started
                return Creation(target, given, [], True, cancelled.completed_steps, cancelled.total_steps, seed, seconds)

        # 3. Convert the latents to native values: PIL images, audio clips or strings.
        values = output.values(self.pipeline.model, target)
        seconds = time.perf_counter() - started
        return Creation(target, given, values, False, output.steps, steps.total, output.seed, seconds, output)

    def save(self, creation: Creation, folder: str | Path) -> WrittenSamples:
        """Write the samples of a finished creation under ``folder`` (PNG, WAV or TXT), with ``generation.json``.

        Inputs that are not paths or strings are recorded by type name. Raises ``ValueError`` for a
        cancelled creation.
        """
        if creation.output is None:
            raise ValueError(
                f"the {creation.target} creation was cancelled after step {creation.completed_steps}, so it has no samples to save; "
                "save only creations whose 'cancelled' is False"
            )
        inputs = {name: value if isinstance(value, (str, Path)) else type(value).__name__ for name, value in creation.inputs.items()}
        return save_generation(creation.output, self.pipeline.model, folder, inputs=inputs)

    def _check_fields(self, target: str, given: Mapping[str, Any], accepted: tuple[str, ...]) -> None:
        """Raise ``ValueError`` unless ``target`` and every given input are fields of the model."""
        fields = self.fields
        if target not in fields:
            raise ValueError(
                f"this model cannot generate '{target}' because its fields are {', '.join(fields)}; "
                f"use a model trained on records that have {target}"
            )
        if not given:
            raise ValueError(f"give at least one of {', '.join(accepted)} to generate {target} from; all of them are None")
        missing = [name for name in given if name not in fields]
        if missing:
            raise ValueError(
                f"this model has no field(s) {', '.join(missing)} to condition on, because its fields are {', '.join(fields)}; "
                f"leave out {', '.join(missing)} or use a model trained on them"
            )


class _StepTracker:
    """Step callback for the pipeline that forwards progress and returns False once ``cancel`` is set."""

    def __init__(self, on_progress: ProgressCallback | None, cancel: threading.Event | None):
        self.on_progress = on_progress
        self.cancel = cancel
        self.total = 0  # total_steps from the last report

    def __call__(self, step: int, total_steps: int) -> bool:
        self.total = total_steps
        if self.on_progress is not None:
            self.on_progress(step, total_steps)
        # Returning False makes the pipeline raise GenerationCancelled after this step.
        return not (self.cancel is not None and self.cancel.is_set())
