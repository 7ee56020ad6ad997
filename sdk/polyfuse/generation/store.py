"""Saving and loading generators inside a model folder, tied to the model weights they were fitted on.

A generator named NAME lives in ``<model>/generators/NAME/``: ``config.json`` (type, plugin,
config, the sha256 of the model weights, a summary of the fit) and weights named after
their own sha256, written first so that ``config.json`` always names a complete file.
Loading reads only JSON and safetensors, and refuses a generator whose recorded model
fingerprint differs from the model's, because its latents would mean something else.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .._version import __version__
from ..config import config_from_dict
from ..errors import CheckpointError, ConfigError, RegistryError
from ..generator import Generator
from ..persistence import atomic_write_json, iter_stale_files, load_tensors, read_versioned_json, save_tensors, sha256_of_file

logger = logging.getLogger(__name__)

GENERATORS_DIR = "generators"
CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoints/last.safetensors"
GENERATOR_FORMAT = "polyfuse-generator"
GENERATOR_FORMAT_VERSION = 1

# Generator names become folder names and CLI values.
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def generator_folder(model_dir: str | Path, name: str) -> Path:
    """Return ``<model_dir>/generators/<name>``, checking that ``name`` is a valid folder name."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"generator name must match {_NAME.pattern} (lowercase letters, digits, '_' and '-'), got {name!r}")
    return Path(model_dir) / GENERATORS_DIR / name


def saved_generators(model_dir: str | Path) -> list[str]:
    """Return the names of the generators saved in a model folder."""
    folder = Path(model_dir) / GENERATORS_DIR
    if not folder.is_dir():
        return []
    return sorted(path.parent.name for path in folder.glob(f"*/{CONFIG_NAME}"))


def model_fingerprint(model_dir: str | Path) -> str:
    """Return the sha256 of a saved model's weights, as its ``config.json`` records it."""
    from ..model import read_model_config

    config = read_model_config(Path(model_dir))
    fingerprint = config.get("weights_sha256")
    if not fingerprint:
        raise CheckpointError(f"{Path(model_dir) / CONFIG_NAME} records no weights_sha256; save the model again with save_pretrained")
    return str(fingerprint)


def save_generator(
    generator: Generator,
    model_dir: str | Path,
    fingerprint: str,
    *,
    name: str | None = None,
    fit_summary: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``generator`` into ``<model_dir>/generators/<name>`` (``name`` defaults to its type) and return the folder."""
    from ..plugins import get_host

    folder = generator_folder(model_dir, name or generator.name)
    folder.mkdir(parents=True, exist_ok=True)

    # 1. Weights under a temporary name, then renamed after their content hash.
    staging = folder / ".weights.staging.safetensors"
    save_tensors(staging, generator.state_dict(), metadata={"format": GENERATOR_FORMAT})
    digest = sha256_of_file(staging)
    weights_name = f"generator-{digest[:16]}.safetensors"
    staging.replace(folder / weights_name)

    # 2. The config that points at them, atomically.
    registry = get_host().generators
    entry = registry.entry(generator.name) if generator.name in registry else None
    config = {
        "format": GENERATOR_FORMAT,
        "format_version": GENERATOR_FORMAT_VERSION,
        "polyfuse_version": __version__,
        "name": folder.name,
        "type": generator.name,
        "class": f"{type(generator).__module__}.{type(generator).__qualname__}",
        "plugin": entry.plugin if entry else None,
        "distribution": entry.distribution if entry else None,
        "version": entry.version if entry else None,
        "latent_dim": generator.latent_dim,
        "config": generator.config_dict(),
        "model_fingerprint": fingerprint,
        "weights": weights_name,
        "weights_sha256": digest,
        "fit": dict(fit_summary or {}),
    }
    atomic_write_json(folder / CONFIG_NAME, config)

    # 3. Weights that the config no longer names.
    for stale in iter_stale_files(folder, "generator-*.safetensors", keep={weights_name}):
        stale.unlink(missing_ok=True)
    logger.info("Saved generator '%s' (%s) to %s", folder.name, generator.name, folder)
    return folder


def read_generator_config(folder: Path) -> dict[str, Any]:
    """Read and check the ``config.json`` of a saved generator folder."""
    return read_versioned_json(
        folder / CONFIG_NAME,
        format=GENERATOR_FORMAT,
        max_version=GENERATOR_FORMAT_VERSION,
        kind="generator config",
        missing_message=f"no {CONFIG_NAME} in {folder}; train the generator with 'polyfuse train-generator' first",
    )


def load_generator(
    model_dir: str | Path,
    name: str,
    *,
    fingerprint: str | None = None,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> Generator:
    """Load the generator saved as ``name`` in a model folder onto ``device``.

    ``fingerprint`` is the sha256 of the model weights the caller uses; by default it is
    read from the model folder. A generator fitted on other weights raises
    :class:`CheckpointError`.
    """
    from ..plugins import get_host

    folder = generator_folder(model_dir, name)
    config = read_generator_config(folder)
    expected = fingerprint or model_fingerprint(model_dir)
    if config.get("model_fingerprint") != expected:
        raise CheckpointError(
            f"generator '{name}' in {folder} was fitted on model weights {str(config.get('model_fingerprint'))[:16]}, "
            f"but the model now has weights {expected[:16]}; retrain it with "
            f"'polyfuse train-generator --model {model_dir} --generator {config.get('type')} --restart'"
        )

    try:
        generator_class = get_host().generators.get(config["type"])
    except RegistryError as error:
        provider = config.get("distribution") or "the plugin that provides it"
        raise CheckpointError(f"generator '{name}' in {folder} has type '{config['type']}', from {provider}; {error}") from None
    where = f"{folder / CONFIG_NAME} 'config'"
    generator = generator_class(config_from_dict(generator_class.config_class, config["config"], where), int(config["latent_dim"]))

    weights = folder / config["weights"]
    if not weights.is_file():
        raise CheckpointError(f"{folder / CONFIG_NAME} names weights {config['weights']}, which are missing from {folder}")
    if verify and sha256_of_file(weights) != config.get("weights_sha256"):
        raise CheckpointError(f"{weights} does not match the sha256 recorded in {folder / CONFIG_NAME}; the folder is damaged, train again")
    tensors, _ = load_tensors(weights, device="cpu")
    try:
        generator.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"weights in {weights} do not fit generator '{config['type']}': {error}") from error
    generator.to(device)
    generator.eval()
    logger.info("Loaded generator '%s' (%s) from %s onto %s", name, config["type"], folder, device)
    return generator


def resolve_generator(
    model_dir: str | Path,
    name: str,
    latent_dim: int,
    *,
    fingerprint: str | None = None,
    device: str | torch.device = "cpu",
) -> Generator:
    """Return the generator saved as ``name``, or a fresh one when ``name`` is a registered type with nothing to fit.

    A trainable generator that was never trained for this model raises
    :class:`CheckpointError` naming the command that trains it and the saved ones.
    """
    from ..plugins import get_host

    if (generator_folder(model_dir, name) / CONFIG_NAME).is_file():
        return load_generator(model_dir, name, fingerprint=fingerprint, device=device)
    registry = get_host().generators
    if name in registry and not registry.get(name).trainable:
        generator = registry.get(name)(None, latent_dim)
        return generator.to(device).eval()
    saved = ", ".join(saved_generators(model_dir)) or "none"
    untrained = ", ".join(entry.name for entry in registry if not entry.cls.trainable) or "none"
    if name not in registry:
        # The name may be a --name for a generator of a registered type that is not trained yet.
        types = ", ".join(sorted(entry.name for entry in registry if entry.cls.trainable)) or "none"
        raise CheckpointError(
            f"no generator '{name}' is saved in {model_dir} (saved: {saved}; usable without training: {untrained}), "
            f"and no generator type of that name is installed; train one under that name with "
            f"'polyfuse train-generator --model {model_dir} --generator TYPE --name {name} --manifest TRAIN.jsonl', "
            f"with TYPE one of: {types}"
        )
    raise CheckpointError(
        f"no generator '{name}' is saved in {model_dir} (saved: {saved}; usable without training: {untrained}); "
        f"train it with 'polyfuse train-generator --model {model_dir} --generator {name} --manifest TRAIN.jsonl'"
    )
