"""The ``tabular`` modality: one vector of ``features`` numbers per record.

Values are a path to a ``.npy`` or single-row ``.csv`` file, or in memory a list, tuple
or array of numbers. Missing entries (NaN) are allowed; they are excluded from the
likelihood through a mask kept beside the values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyfuse import Decoder, Encoder, Modality, ModalityBatch, ModalityConfig, RecordSource
from polyfuse.config import require
from polyfuse.persistence import atomic_write_text


@dataclass(frozen=True)
class TabularConfig(ModalityConfig):
    """Settings of the tabular modality."""

    features: int = 8  # length of every feature vector
    hidden: int = 128  # width of the encoder and decoder MLPs
    noise_std: float = 0.5  # standard deviation of the Gaussian likelihood, in feature units

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.features > 0, f"features must be > 0, got {self.features}")
        require(self.hidden > 0, f"hidden must be > 0, got {self.hidden}")
        require(self.noise_std > 0, f"noise_std must be > 0, got {self.noise_std}")


class MlpBackbone(nn.Module):
    """Two-layer MLP over the values and their observed mask."""

    def __init__(self, features: int, hidden: int, feature_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2 * features, hidden), nn.SiLU(), nn.Linear(hidden, feature_dim), nn.SiLU())

    def forward(self, data: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.layers(data.flatten(1))  # (B, 2, F) -> (B, 2F) -> (B, feature_dim)


class MlpDecoder(Decoder):
    """MLP from the latent to feature means, with a Gaussian likelihood on observed entries."""

    def __init__(self, latent_dim: int, features: int, hidden: int, noise_std: float):
        super().__init__()
        self.noise_std = noise_std
        self.layers = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, features))

    def log_likelihood(self, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
        mean = self.layers(latents)
        values, observed = batch.data[:, 0], batch.data[:, 1]  # (B, F) each
        log_probs = torch.distributions.Normal(mean, self.noise_std).log_prob(values)
        return (log_probs * observed).sum(dim=1)

    def generate(self, latents: torch.Tensor, *, temperature: float = 0.0, generator: torch.Generator | None = None) -> ModalityBatch:
        mean = self.layers(latents)
        if temperature > 0:
            mean = mean + temperature * self.noise_std * torch.randn(mean.shape, generator=generator, device=mean.device)
        data = torch.stack([mean, torch.ones_like(mean)], dim=1)  # (B, 2, F)
        return ModalityBatch(data, torch.ones(len(mean), dtype=torch.bool, device=mean.device))


class TabularModality(Modality):
    """Fixed-length numeric feature vectors."""

    name = "tabular"
    config_class = TabularConfig
    file_suffix = ".csv"
    description = "fixed-length numeric feature vectors (example third-party plugin)"
    config: TabularConfig

    def load(self, value: Any, source: RecordSource) -> np.ndarray:
        if isinstance(value, (str, Path)) and not _looks_like_json_list(value):
            path = source.resolve_file(value, self.field)
            vector = _read_vector_file(path, source, self.field)
        else:
            if isinstance(value, str):
                value = json.loads(value)
            try:
                vector = np.asarray(value, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError) as error:
                raise source.error(self.field, f"tabular value is not a list of numbers ({error})", value) from error
        if vector.shape != (self.config.features,):
            raise source.error(
                self.field,
                f"expected {self.config.features} features, got {vector.size}",
                value if isinstance(value, (str, Path)) else vector.tolist(),
                "Fix the vector or set 'features' in the tabular config",
            )
        if np.isinf(vector).any():
            raise source.error(self.field, "tabular vector has an infinite value", vector.tolist(), "Use NaN for a missing entry")
        return vector

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        observed = np.isfinite(raw)
        values = np.where(observed, raw, 0.0)
        return torch.tensor(np.stack([values, observed]), dtype=torch.float32)  # (2, F)

    def build_encoder(self, latent_dim: int) -> Encoder:
        config = self.config
        return Encoder(MlpBackbone(config.features, config.hidden, config.feature_dim), config.feature_dim, latent_dim)

    def build_decoder(self, latent_dim: int) -> Decoder:
        return MlpDecoder(latent_dim, self.config.features, self.config.hidden, self.config.noise_std)

    def postprocess(self, data: torch.Tensor, length: int | None = None) -> np.ndarray:
        return data[0].detach().cpu().numpy()

    def save(self, value: np.ndarray, path: str | Path) -> Path:
        return atomic_write_text(Path(path), ",".join(f"{v:.6g}" for v in value) + "\n")


def _looks_like_json_list(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("[")


def _read_vector_file(path: Path, source: RecordSource, field: str) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False).astype(np.float64).reshape(-1)
        return np.loadtxt(path, delimiter=",", ndmin=1).astype(np.float64).reshape(-1)
    except (ValueError, OSError) as error:
        raise source.error(field, f"cannot read feature vector ({error})", path, "Write one row of numbers as .npy or .csv") from error
