"""The multimodal VAE: one encoder and decoder per modality around a shared latent space."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ._version import __version__
from .config import config_from_dict, config_to_dict, require
from .errors import CheckpointError, PolyfuseWarning, RegistryError
from .fusion import FUSION_METHODS, Experts, fuse
from .modality import Modality, ModalityBatch
from .persistence import atomic_write_json, iter_stale_files, load_tensors, read_versioned_json, save_tensors, sha256_of_file
from .posterior import DiagonalGaussian, GaussianMixture

if TYPE_CHECKING:
    from .encoding import EncodeOutput

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
MODEL_FORMAT = "polyfuse-model"
MODEL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`MultimodalVAE` apart from the modalities' own configs."""

    latent_dim: int = 32  # dimensions of the shared latent space
    fusion: str = "mopoe"  # joint posterior: "poe", "moe" or "mopoe"

    def __post_init__(self) -> None:
        require(self.latent_dim > 0, f"latent_dim must be > 0, got {self.latent_dim}")
        require(self.fusion in FUSION_METHODS, f"fusion must be one of {', '.join(FUSION_METHODS)}, got {self.fusion!r}")


class MultimodalVAE(nn.Module):
    """Encoders and decoders for several modalities that share one latent space.

    ``modalities`` maps field names (the manifest fields) to modality plugin instances.
    Any subset of fields can be encoded; the present experts are fused with
    ``config.fusion``.
    """

    def __init__(self, modalities: Mapping[str, Modality], config: ModelConfig = ModelConfig()):
        super().__init__()
        if not modalities:
            raise ValueError("a MultimodalVAE needs at least one modality")
        for field, modality in modalities.items():
            if not isinstance(modality, Modality):
                raise TypeError(f"modality for field '{field}' must be a polyfuse.Modality, got {type(modality).__name__}")
            if modality.field != field:
                raise ValueError(f"modality registered for field '{field}' has field '{modality.field}'; they must match")
        self.config = config
        self.modalities: dict[str, Modality] = dict(modalities)
        self.encoders = nn.ModuleDict({field: m.build_encoder(config.latent_dim) for field, m in self.modalities.items()})
        self.decoders = nn.ModuleDict({field: m.build_decoder(config.latent_dim) for field, m in self.modalities.items()})
        # Set by save_pretrained and from_pretrained: the sha256 of the weights file.
        self.fingerprint: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.modalities)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- encoding ------------------------------------------------------------

    def encode_experts(self, batch: Mapping[str, ModalityBatch], fields: Iterable[str] | None = None) -> Experts:
        """Run each requested encoder on the rows where its modality is present.

        Returns the experts stacked over all model fields, (B, M, D); fields that are not
        requested or not in ``batch`` are marked absent.
        """
        wanted = set(self.fields if fields is None else self.check_fields(fields))
        batch_size = next(iter(batch.values())).batch_size
        count, dim = len(self.fields), self.latent_dim
        mean = torch.zeros(batch_size, count, dim, device=self.device)
        logvar = torch.zeros(batch_size, count, dim, device=self.device)
        present = torch.zeros(batch_size, count, dtype=torch.bool, device=self.device)
        for index, field in enumerate(self.fields):
            if field not in wanted or field not in batch:
                continue
            modality_batch = batch[field]
            rows = modality_batch.present.nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            posterior = self.encoders[field](_present_rows(modality_batch, rows).to(self.device))
            rows = rows.to(self.device)
            mean[rows, index] = posterior.mean
            logvar[rows, index] = posterior.logvar
            present[rows, index] = True
        return Experts(mean, logvar, present, self.fields)

    def fuse(self, experts: Experts, method: str | None = None) -> DiagonalGaussian | GaussianMixture:
        return fuse(experts, method or self.config.fusion)

    def posterior(
        self, batch: Mapping[str, ModalityBatch], fields: Iterable[str] | None = None
    ) -> DiagonalGaussian | GaussianMixture:
        """Return the joint posterior of the present modalities among ``fields``."""
        return self.fuse(self.encode_experts(batch, fields))

    # -- decoding ------------------------------------------------------------

    def log_likelihoods(self, latents: torch.Tensor, batch: Mapping[str, ModalityBatch]) -> dict[str, torch.Tensor]:
        """Return, per field in ``batch``, log p(x | z) for each row (B,), zero where absent."""
        result: dict[str, torch.Tensor] = {}
        for field, modality_batch in batch.items():
            values = torch.zeros(latents.shape[0], device=latents.device)
            rows = modality_batch.present.nonzero(as_tuple=True)[0]
            if rows.numel():
                selected = _present_rows(modality_batch, rows).to(latents.device)
                values = values.index_put((rows.to(latents.device),), self.decoders[field].log_likelihood(latents[rows], selected))
            result[field] = values
        return result

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        fields: Iterable[str] | None = None,
        *,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> dict[str, ModalityBatch]:
        """Decode latents (B, D) into each requested modality's preprocessed space."""
        fields = self.fields if fields is None else self.check_fields(fields)
        latents = latents.to(self.device)
        return {field: self.decoders[field].generate(latents, temperature=temperature, generator=generator) for field in fields}

    # -- high-level API ------------------------------------------------------

    def encode(
        self,
        records: Sequence[Mapping[str, Any]],
        fields: Iterable[str] | None = None,
        *,
        batch_size: int = 256,
        skip_invalid: bool = False,
        progress: bool = False,
    ) -> EncodeOutput:
        """Encode records (dicts of field to path or in-memory value) into the shared latent.

        Relative paths are resolved against the working directory. With ``skip_invalid`` an
        invalid record is left out and listed in ``skipped``. See
        :func:`polyfuse.encoding.encode_records` for the returned fields.
        """
        from .encoding import encode_records

        return encode_records(self, records, fields, batch_size=batch_size, skip_invalid=skip_invalid, progress=progress)

    def check_fields(self, fields: Iterable[str]) -> tuple[str, ...]:
        """Return ``fields`` as a tuple, raising ``ValueError`` for names the model lacks."""
        fields = tuple(fields)
        unknown = [field for field in fields if field not in self.modalities]
        if unknown:
            raise ValueError(
                f"unknown modality field(s) {', '.join(map(repr, unknown))}; this model has: {', '.join(self.fields)}"
            )
        return fields

    # -- persistence ---------------------------------------------------------

    def save_pretrained(self, path: str | Path, extra_config: Mapping[str, Any] | None = None) -> Path:
        """Write the weights (safetensors) and ``config.json`` into the folder ``path``.

        The weights file is named after its content hash and written first; ``config.json``
        is replaced atomically afterwards and names it, so a reader sees either the old model
        or the new one. Weight files no longer named by the config are then removed.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)

        # 1. Weights under a temporary name, then renamed after their content hash.
        staging = folder / ".weights.staging.safetensors"
        save_tensors(staging, self.state_dict(), metadata={"format": MODEL_FORMAT})
        digest = sha256_of_file(staging)
        weights_name = f"model-{digest[:16]}.safetensors"
        staging.replace(folder / weights_name)

        # 2. The config that points at them, atomically.
        config = self.describe()
        config.update({"weights": weights_name, "weights_sha256": digest})
        if extra_config:
            config.update(extra_config)
        atomic_write_json(folder / CONFIG_NAME, config)
        self.fingerprint = digest

        # 3. Weights that no config refers to any more.
        for stale in iter_stale_files(folder, "model-*.safetensors", keep={weights_name}):
            stale.unlink(missing_ok=True)
        logger.info("Saved model to %s (weights %s)", folder, weights_name)
        return folder

    def describe(self) -> dict[str, Any]:
        """Return the JSON description of this model: versions, config and plugins used."""
        from .plugins import get_host

        registry = get_host().modalities
        modalities: dict[str, Any] = {}
        for field, modality in self.modalities.items():
            entry = registry.entry(modality.name) if modality.name in registry else None
            modalities[field] = {
                "type": modality.name,
                "class": f"{type(modality).__module__}.{type(modality).__qualname__}",
                "plugin": entry.plugin if entry else None,
                "distribution": entry.distribution if entry else None,
                "version": entry.version if entry else None,
                "config": modality.config_dict(),
            }
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "polyfuse_version": __version__,
            "class": type(self).__name__,
            "model": config_to_dict(self.config),
            "modalities": modalities,
        }

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> MultimodalVAE:
        """Load a model written by :meth:`save_pretrained` onto ``device``.

        Only JSON and safetensors are read, so loading runs no code from the files. With
        ``verify`` the weights are checked against the sha256 recorded in the config.
        """
        folder = Path(path)
        config = read_model_config(folder)
        modalities = build_modalities(config, folder)
        model = cls(modalities, config_from_dict(ModelConfig, config["model"], f"{folder / CONFIG_NAME} 'model'"))

        weights_path = folder / config["weights"]
        if not weights_path.is_file():
            raise CheckpointError(f"{folder / CONFIG_NAME} names weights {config['weights']}, which are missing from {folder}")
        digest = sha256_of_file(weights_path)
        if verify and digest != config.get("weights_sha256"):
            raise CheckpointError(
                f"{weights_path} does not match the sha256 recorded in {folder / CONFIG_NAME}; the folder is damaged, save the model again"
            )
        tensors, _ = load_tensors(weights_path, device="cpu")
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"weights in {weights_path} do not fit the configured model: {error}") from error
        model.fingerprint = digest
        model.to(device)
        model.eval()
        logger.info("Loaded model from %s (fields %s) onto %s", folder, ", ".join(model.fields), device)
        return model


def _present_rows(batch: ModalityBatch, rows: torch.Tensor) -> ModalityBatch:
    """Return the rows of ``batch`` at ``rows``, or the batch itself when every row is present.

    Keeping the same tensor lets a modality reuse work between its encoder and decoder.
    """
    return batch if rows.numel() == batch.batch_size else batch.select(rows)


def read_model_config(folder: Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a saved model folder."""
    config_path = folder / CONFIG_NAME
    config = read_versioned_json(
        config_path,
        format=MODEL_FORMAT,
        max_version=MODEL_FORMAT_VERSION,
        kind="model config",
        missing_message=f"no {CONFIG_NAME} in {folder}; pass the folder that save_pretrained or 'polyfuse train --out' wrote",
    )
    saved_version = str(config.get("polyfuse_version", "0"))
    if saved_version.split(".")[0] != __version__.split(".")[0]:
        warnings.warn(
            f"{config_path} was written by polyfuse {saved_version}; this is {__version__}",
            PolyfuseWarning,
            stacklevel=3,
        )
    return config


def build_modalities(config: Mapping[str, Any], folder: Path) -> dict[str, Modality]:
    """Instantiate the modality plugins named in a saved config."""
    from .plugins import get_host

    registry = get_host().modalities
    modalities: dict[str, Modality] = {}
    for field, entry in config["modalities"].items():
        try:
            modality_class = registry.get(entry["type"])
        except RegistryError as error:
            provider = entry.get("distribution") or "the plugin that provides it"
            raise CheckpointError(
                f"model in {folder} uses modality type '{entry['type']}' for field '{field}', from {provider}; {error}"
            ) from None
        where = f"{folder / CONFIG_NAME} modalities.{field}.config"
        modalities[field] = modality_class.from_config_dict(entry["config"], field=field, where=where)
    return modalities
