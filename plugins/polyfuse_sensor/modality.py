"""The sensor modality: multichannel time series of any length and rate.

The preprocessed tensor is (channels + 1, T): the values, normalised as configured, and a
last row that marks observed steps (1) and filled gaps (0). ``length_mode`` "resample"
stretches every series to ``length`` steps; "pad" keeps the first ``length`` steps and
pads shorter series, recording each series' length for masking.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from polyfuse.config import require
from polyfuse.modality import Encoder, Modality, ModalityBatch, ModalityConfig, RecordSource
from polyfuse.persistence import atomic_write, atomic_write_text

from .networks import ConvSeriesBackbone, ConvSeriesDecoder
from .preprocessing import fill_gaps, normalise, stretch, to_uniform_rate
from .reading import read_series

LENGTH_MODES = ("resample", "pad")
NORMALISE_MODES = ("none", "series", "channel")
GAP_POLICIES = ("interpolate", "mask")


@dataclass(frozen=True)
class SensorConfig(ModalityConfig):
    """Settings of the sensor modality."""

    channels: int = 6  # value channels per step; inputs with another count are rejected
    sample_rate: float = 50.0  # Hz that every series is resampled to
    input_sample_rate: float | None = None  # Hz of inputs that carry no rate (NPY, CSV without time); None: already at sample_rate
    columns: tuple[str, ...] = ()  # CSV columns to read, in order; empty reads every column except a time column
    channel_names: tuple[str, ...] = ()  # names written as the CSV header of decoded series; empty uses channel_0...
    length: int = 128  # steps the networks see, at sample_rate
    length_mode: str = "pad"  # "pad" (crop or pad to length, masked) or "resample" (stretch to length)
    normalize: str = "none"  # per-series normalisation: "none", "series" (shared scale) or "channel" (z-score)
    normalize_channels: tuple[int, ...] = ()  # channel indices that normalize applies to; empty means all
    gaps: str = "interpolate"  # NaN gaps: "interpolate" linearly or "mask" (zeros); gaps never enter the likelihood
    width: int = 32  # channels of the first convolution; later ones double, up to 4x
    depth: int = 3  # residual blocks; each after the first halves the time axis
    augment_scale: float = 0.0  # maximum random amplitude change in training, as a fraction
    augment_rotate: float = 0.0  # maximum random rotation of channels 0 and 1 as a 2-D vector, in degrees
    augment_time_warp: float = 0.0  # maximum random change of local speed in training, as a fraction
    augment_noise: float = 0.0  # standard deviation of Gaussian noise added in training, in normalised units
    augment_channel_dropout: float = 0.0  # probability that training zeroes one random channel of a series, as a dead sensor would

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.channels > 0, f"channels must be > 0, got {self.channels}")
        require(self.sample_rate > 0, f"sample_rate must be > 0 Hz, got {self.sample_rate}")
        require(self.input_sample_rate is None or self.input_sample_rate > 0, f"input_sample_rate must be > 0 Hz or null, got {self.input_sample_rate}")
        require(not self.columns or len(self.columns) == self.channels, f"columns must list {self.channels} names, got {list(self.columns)}")
        require(not self.channel_names or len(self.channel_names) == self.channels, f"channel_names must list {self.channels} names, got {list(self.channel_names)}")
        require(self.length >= 8, f"length must be >= 8 steps, got {self.length}")
        require(self.length_mode in LENGTH_MODES, f"length_mode must be one of {', '.join(LENGTH_MODES)}, got {self.length_mode!r}")
        require(self.normalize in NORMALISE_MODES, f"normalize must be one of {', '.join(NORMALISE_MODES)}, got {self.normalize!r}")
        require(all(0 <= c < self.channels for c in self.normalize_channels), f"normalize_channels must be indices below {self.channels}, got {list(self.normalize_channels)}")
        require(self.gaps in GAP_POLICIES, f"gaps must be one of {', '.join(GAP_POLICIES)}, got {self.gaps!r}")
        require(self.width > 0 and self.depth >= 1, f"width and depth must be positive, got {self.width} and {self.depth}")
        require(0 <= self.augment_scale < 1, f"augment_scale must be in [0, 1), got {self.augment_scale}")
        require(0 <= self.augment_rotate <= 180, f"augment_rotate must be in [0, 180] degrees, got {self.augment_rotate}")
        require(0 <= self.augment_time_warp < 1, f"augment_time_warp must be in [0, 1), got {self.augment_time_warp}")
        require(self.augment_noise >= 0, f"augment_noise must be >= 0, got {self.augment_noise}")
        require(0 <= self.augment_channel_dropout <= 1, f"augment_channel_dropout must be in [0, 1], got {self.augment_channel_dropout}")


@dataclass
class SensorSeries:
    """A decoded series: values (T, C) at ``sample_rate`` Hz, with channel names."""

    values: np.ndarray
    sample_rate: float
    channel_names: tuple[str, ...]


class SensorModality(Modality):
    """Time series from NPY, NPZ, CSV, arrays, ``(array, rate)`` tuples or ``{"data", "sample_rate"}`` dicts.

    Arrays are time-major (steps, channels). Decoded series are saved as NPY, or as CSV
    with a time column when the path ends in ``.csv``.
    """

    name = "sensor"
    config_class = SensorConfig
    file_suffix = ".npy"
    description = "multichannel time series (NPY, NPZ, CSV) at any sample rate"
    # "noise": Gaussian noise with this standard deviation relative to each channel's own;
    # "dropout": this share of the steps lost, becoming gaps that the mask row marks.
    corruptions = {"noise": (0.1, 0.3, 1.0), "dropout": (0.1, 0.3, 0.5)}
    config: SensorConfig

    def load(self, value: Any, source: RecordSource) -> np.ndarray:
        config = self.config
        series = read_series(value, source, self.field, config.columns)
        if series.values.shape[1] != config.channels:
            raise source.error(
                self.field,
                f"expected {config.channels} channels, got an array of shape {series.values.shape} (time, channels)",
                value if isinstance(value, (str, Path)) else None,
                "Pass a (time, channels) array or set the sensor 'channels' (and 'columns' for CSV) in the config",
            )
        if not np.isfinite(series.values).any(axis=1).any():
            raise source.error(self.field, "sensor series holds only NaN values", value if isinstance(value, (str, Path)) else None)
        values, observed = fill_gaps(series.values, config.gaps)
        values, observed = to_uniform_rate(series, values, observed, config.sample_rate, config.input_sample_rate)
        if config.length_mode == "resample":
            values, observed = stretch(values, observed, config.length)
        else:
            values, observed = values[: config.length], observed[: config.length]
        values = normalise(values, observed, config.normalize, config.normalize_channels)
        return np.concatenate([values, observed[:, None].astype(np.float64)], axis=1).astype(np.float32)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(raw.T))  # (T, C + 1) -> (C + 1, T)

    def collate(self, items: Sequence[torch.Tensor | None]) -> ModalityBatch:
        """Pad every series to ``length`` steps and record each one's length."""
        count, length = len(items), self.config.length
        data = torch.zeros(count, self.config.channels + 1, length)
        lengths = torch.zeros(count, dtype=torch.long)
        present = torch.zeros(count, dtype=torch.bool)
        for row, item in enumerate(items):
            if item is None:
                continue
            steps = min(item.shape[-1], length)
            data[row, :, :steps] = item[:, :steps]
            lengths[row], present[row] = steps, True
        return ModalityBatch(data, present, lengths)

    def augment(self, batch: ModalityBatch, generator: torch.Generator) -> ModalityBatch:
        config = self.config
        if not (config.augment_scale or config.augment_rotate or config.augment_time_warp or config.augment_noise or config.augment_channel_dropout):
            return batch
        count, device = batch.data.shape[0], batch.data.device
        values, observed = batch.data[:, : config.channels].clone(), batch.data[:, config.channels :]

        def uniform(limit: float, *shape: int) -> torch.Tensor:
            return (torch.rand(count, *shape, generator=generator, device=device) * 2 - 1) * limit

        if config.augment_rotate and config.channels >= 2:
            angle = uniform(math.radians(config.augment_rotate)).view(-1, 1)  # (B, 1)
            x, y = values[:, 0], values[:, 1]
            values[:, 0], values[:, 1] = x * angle.cos() - y * angle.sin(), x * angle.sin() + y * angle.cos()
        if config.augment_scale:
            values = values * (1 + uniform(config.augment_scale, config.channels, 1))
        if config.augment_time_warp:
            values, observed = _time_warp(values, observed, batch.lengths, uniform(config.augment_time_warp))
        if config.augment_noise:
            values = values + config.augment_noise * torch.randn(values.shape, generator=generator, device=device)
        if config.augment_channel_dropout:
            dropped = torch.rand(count, generator=generator, device=device) < config.augment_channel_dropout  # (B,)
            channel = torch.randint(config.channels, (count,), generator=generator, device=device)  # (B,)
            dead = torch.nn.functional.one_hot(channel, config.channels).bool() & dropped.unsqueeze(1)  # (B, C)
            values = values.masked_fill(dead.unsqueeze(-1), 0.0)
        values = values * observed  # keep padding and filled gaps out of reach of the noise
        data = torch.cat([values, observed], dim=1) * batch.present.view(-1, 1, 1)
        return ModalityBatch(data, batch.present, batch.lengths)

    def corrupt(self, item: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
        channels = self.config.channels
        values, observed = item[:channels], item[channels:]
        if kind == "noise":
            scale = values.std(dim=1, keepdim=True).clamp_min(1e-6)  # (C, 1)
            noisy = values + level * scale * torch.randn(values.shape, generator=generator, device=item.device)
            return torch.cat([noisy * observed, observed])
        if kind == "dropout":
            lost = torch.rand(item.shape[-1], generator=generator, device=item.device) < level  # (T,)
            kept = observed * ~lost
            # Lost steps become gaps: zero values, marked unobserved, as the "mask" gap policy does.
            return torch.cat([values * kept, kept])
        return super().corrupt(item, kind, level, generator)

    def build_encoder(self, latent_dim: int) -> Encoder:
        config = self.config
        backbone = ConvSeriesBackbone(config.channels, config.width, config.depth, config.feature_dim)
        return Encoder(backbone, config.feature_dim, latent_dim)

    def build_decoder(self, latent_dim: int) -> ConvSeriesDecoder:
        config = self.config
        return ConvSeriesDecoder(latent_dim, config.channels, config.length, config.width, config.depth)

    def postprocess(self, data: torch.Tensor, length: int | None = None) -> SensorSeries:
        values = data[: self.config.channels].detach().float().cpu().numpy().T  # (C, T) -> (T, C)
        if length is not None:
            values = values[:length]
        names = self.config.channel_names or tuple(f"channel_{i}" for i in range(self.config.channels))
        return SensorSeries(np.ascontiguousarray(values), self.config.sample_rate, names)

    def save(self, value: SensorSeries, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix.lower() == ".csv":
            return atomic_write_text(path, _to_csv(value))

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:
                np.save(handle, value.values.astype(np.float32))

        return atomic_write(path, write)


def _to_csv(series: SensorSeries) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["time", *series.channel_names])
    for step, row in enumerate(series.values):
        writer.writerow([f"{step / series.sample_rate:.6g}", *(f"{value:.6g}" for value in row)])
    return buffer.getvalue()


def _time_warp(values: torch.Tensor, observed: torch.Tensor, lengths: torch.Tensor | None, speed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample each series along a smooth monotone time map whose speed varies by ``speed`` (B,)."""
    count, _, steps = values.shape
    position = torch.linspace(0, 1, steps, device=values.device).unsqueeze(0)  # (1, T)
    # A half-sine bump moves the middle of the series while its ends stay fixed.
    warped = position + speed.unsqueeze(1) * torch.sin(math.pi * position) / math.pi
    if lengths is not None:
        scale = (lengths.clamp_min(1).to(values.dtype) - 1) / max(steps - 1, 1)  # valid fraction of the padded axis
        warped = warped * scale.unsqueeze(1)
    grid_x = warped * 2 - 1  # grid_sample coordinates span [-1, 1]
    grid = torch.stack([grid_x, torch.zeros_like(grid_x)], dim=-1).unsqueeze(1)  # (B, 1, T, 2)
    stacked = torch.cat([values, observed], dim=1).unsqueeze(2)  # (B, C + 1, 1, T)
    resampled = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="border", align_corners=True).squeeze(2)
    if lengths is not None:
        inside = torch.arange(steps, device=values.device).unsqueeze(0) < lengths.unsqueeze(1)
        resampled = resampled * inside.unsqueeze(1)
    channels = values.shape[1]
    return resampled[:, :channels], (resampled[:, channels:] >= 0.5).to(values.dtype)
