"""polyfuse: fuse text, images, audio and sensor series into one shared latent space.

Names are imported on first use, so ``import polyfuse`` and ``polyfuse --help`` do not
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# Public name to the module that defines it.
_EXPORTS = {
    "Condition": "generator",
    "ConfigError": "errors",
    "DatasetBuildOutput": "datasets",
    "DatasetRecipe": "datasets",
    "Decoder": "modality",
    "DiagonalGaussian": "posterior",
    "EncodeOutput": "encoding",
    "Encoder": "modality",
    "Experts": "fusion",
    "FitOutput": "generator",
    "GaussianMixture": "posterior",
    "GenerationCancelled": "generator",
    "GenerationOutput": "generation.api",
    "GenerationPipeline": "generation.api",
    "Generator": "generator",
    "GeneratorConfig": "generator",
    "GeneratorTrainingConfig": "generation.training",
    "InvalidRecordError": "errors",
    "Manifest": "data.manifest",
    "Modality": "modality",
    "ModalityBatch": "modality",
    "ModalityConfig": "modality",
    "ModelConfig": "model",
    "MultimodalVAE": "model",
    "PolyfuseError": "errors",
    "RecordSource": "modality",
    "RunConfig": "training.config",
    "TrainingConfig": "training.config",
    "encode_manifest": "encoding",
    "encode_records": "encoding",
    "fuse": "fusion",
    "get_host": "plugins",
    "hookimpl": "hookspecs",
    "load_generator": "generation.store",
    "read_manifest": "data.manifest",
    "save_generator": "generation.store",
    "train": "training.run",
    "train_generator": "generation.run",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'polyfuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
