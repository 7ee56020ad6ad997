"""Training a generator for a saved model from a manifest: what ``polyfuse train-generator`` runs.

The generator is saved inside the model folder (see :mod:`polyfuse.generation.store`),
next to its checkpoint ``generators/NAME/checkpoints/last.safetensors``. Running again
with the same settings resumes from that checkpoint; only ``epochs`` may differ, to extend
a finished run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.dataset import SkippedRecord, prepare_records
from ..data.manifest import read_manifest
from ..errors import ConfigError
from ..generator import FitOutput, Generator, GeneratorConfig
from ..model import MultimodalVAE
from .store import CHECKPOINT_NAME, generator_folder, save_generator
from .training import GeneratorTrainingConfig, TrainingCallback, check_resumable, describe_run

logger = logging.getLogger(__name__)


@dataclass
class GeneratorRunOutput:
    """Result of :func:`train_generator`."""

    generator: Generator  # the fitted generator, in evaluation mode
    fit: FitOutput
    folder: Path  # where the generator was saved
    skipped: list[SkippedRecord] = field(default_factory=list)


def train_generator(
    model_dir: str | Path,
    generator_type: str,
    manifest: str | Path,
    *,
    config: GeneratorConfig | None = None,
    training: GeneratorTrainingConfig = GeneratorTrainingConfig(),
    name: str | None = None,
    skip_invalid: bool = False,
    resume: bool = True,
    progress: bool = True,
    on_step: TrainingCallback | None = None,
) -> GeneratorRunOutput:
    """Fit a generator of type ``generator_type`` on the latents of ``manifest`` and save it in ``model_dir``.

    ``config`` must be an instance of the generator's own config class, and ``None`` uses its
    defaults. ``name`` is the folder under ``generators/`` and defaults to the type.
    """
    from ..plugins import get_host

    generator_class = get_host().generators.get(generator_type)
    if not generator_class.trainable:
        raise ConfigError(
            f"generator '{generator_type}' has nothing to train; use it directly, for example "
            f"'polyfuse generate --model {model_dir} --generator {generator_type}'"
        )
    folder = generator_folder(model_dir, name or generator_type)

    # 1. The model and the generator; the seed fixes the generator's initialisation.
    model = MultimodalVAE.from_pretrained(model_dir, device=training.device)
    torch.manual_seed(training.seed)
    generator = generator_class(config, model.latent_dim)

    # 2. Refuse to resume a checkpoint of another run.
    checkpoint = folder / CHECKPOINT_NAME
    described = describe_run(generator, training, model.fingerprint)
    if resume and checkpoint.exists():
        check_resumable(checkpoint, described)

    # 3. The records, read with the model's own modality settings.
    records = read_manifest(manifest)
    fields = [name for name in model.fields if name in records.keys]
    if not fields:
        raise ConfigError(
            f"{manifest} has none of the model's fields ({', '.join(model.fields)}); its keys are {', '.join(sorted(records.keys))}"
        )
    dataset = prepare_records(records.records, {name: model.modalities[name] for name in fields}, skip_invalid=skip_invalid, progress=progress)

    # 4. Fit, then save next to the checkpoint.
    output = generator.fit(
        model, dataset, training=training, checkpoint_path=checkpoint, run_config=described, resume=resume, progress=progress, on_step=on_step
    )
    summary = {
        "manifest": str(Path(manifest).resolve()),
        "records": len(dataset),
        "fields": fields,
        "steps": output.steps,
        "seconds": round(output.seconds, 3),
        "training": described["training"],
        "final_epoch": output.history[-1] if output.history else {},
        "diagnostics": output.diagnostics,
    }
    saved = save_generator(generator, model_dir, model.fingerprint or "", name=folder.name, fit_summary=summary)
    generator.eval()
    return GeneratorRunOutput(generator, output, saved, list(dataset.skipped))
