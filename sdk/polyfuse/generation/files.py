"""Writing generated samples to files, with a JSON record of how they were made.

Each target field gets a folder of files named by sample index, written by the modality's
own ``save`` (PNG, WAV, NPY, TXT for the built-in ones). Series-like values (an object with
a 2-D ``values`` array of shape (steps, channels) and a ``sample_rate``) also get a PNG
plot. ``generation.json`` records the inputs, the generator, the seed, the options and the
steps actually used, and the model fingerprint. Every file is written atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._version import __version__
from ..model import MultimodalVAE
from ..persistence import atomic_write, atomic_write_json
from .api import GenerationOutput

logger = logging.getLogger(__name__)

RECORD_NAME = "generation.json"


@dataclass
class WrittenSamples:
    """Files written by :func:`save_generation`."""

    folder: Path
    files: dict[str, list[Path]]  # per target field, the files of each sample (plots included)
    record: Path  # the JSON record


def save_generation(
    output: GenerationOutput,
    model: MultimodalVAE,
    out: str | Path,
    *,
    inputs: Mapping[str, Any] | None = None,
    model_dir: str | Path | None = None,
) -> WrittenSamples:
    """Write every sample of ``output`` under ``out`` and the record ``generation.json``.

    ``inputs`` (field to the value as the user gave it, for example a path or a caption) and
    ``model_dir`` are only recorded.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    for field_name in output.outputs:
        modality = model.modalities[field_name]
        written: list[Path] = []
        for index, value in enumerate(output.values(model, field_name)):
            path = folder / field_name / f"{index:03d}{modality.file_suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(modality.save(value, path))
            if is_series(value):
                written.append(plot_series(value, path.with_suffix(".png"), title=f"{field_name} sample {index}"))
        files[field_name] = written

    record = {
        "polyfuse_version": __version__,
        "model": str(Path(model_dir).resolve()) if model_dir is not None else None,
        "model_fingerprint": output.model_fingerprint,
        "generator": output.generator,
        "generator_type": output.generator_type,
        "inputs": {name: str(value) for name, value in (inputs or {}).items()},
        "condition_fields": list(output.condition_fields),
        "targets": list(output.outputs),
        "num_samples": output.num_samples,
        "seed": output.seed,
        "options": output.options,
        "steps": output.steps,
        "temperature": output.temperature,
        "seconds": round(output.seconds, 3),
        "files": {name: [str(path.relative_to(folder)) for path in paths] for name, paths in files.items()},
        **output.extra,
    }
    record_path = atomic_write_json(folder / RECORD_NAME, record)
    logger.info("Wrote %d samples of %s to %s", output.num_samples, ", ".join(files), folder)
    return WrittenSamples(folder, files, record_path)


def is_series(value: Any) -> bool:
    """Return whether ``value`` looks like a decoded time series: a 2-D ``values`` array and a ``sample_rate``."""
    values = getattr(value, "values", None)
    return isinstance(values, np.ndarray) and values.ndim == 2 and hasattr(value, "sample_rate")


def plot_series(series: Any, path: str | Path, *, title: str = "") -> Path:
    """Draw each channel of a series against time in seconds and write the figure as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display is needed, or available on servers
    import matplotlib.pyplot as plt

    values = np.asarray(series.values)  # (steps, channels)
    seconds = np.arange(values.shape[0]) / float(series.sample_rate)
    names = list(getattr(series, "channel_names", ()) or [f"channel_{i}" for i in range(values.shape[1])])
    figure, axes = plt.subplots(figsize=(6, 3), dpi=100)
    try:
        for channel in range(values.shape[1]):
            axes.plot(seconds, values[:, channel], label=names[channel] if channel < len(names) else f"channel_{channel}")
        axes.set_xlabel("time (s)")
        axes.set_title(title)
        axes.legend(loc="upper right", fontsize="small")
        figure.tight_layout()
        return atomic_write(Path(path), lambda temporary: figure.savefig(temporary, format="png"))
    finally:
        plt.close(figure)
