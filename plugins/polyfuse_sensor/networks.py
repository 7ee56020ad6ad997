"""1-D convolutional encoder backbone and decoder for multichannel time series.

Inputs have the sensor layout (B, C + 1, T): C value rows and one observed-mask row.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from polyfuse.modality import Decoder, ModalityBatch

# Lower bound of the learned per-channel noise scale, in normalised units.
_MIN_LOG_STD = math.log(1e-2)


class ResidualBlock(nn.Module):
    """Two 1-D convolutions with GroupNorm and SiLU, and a strided skip path."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, 5, stride=stride, padding=2),
            nn.GroupNorm(_groups(out_channels), out_channels),
            nn.SiLU(),
            nn.Conv1d(out_channels, out_channels, 5, padding=2),
            nn.GroupNorm(_groups(out_channels), out_channels),
        )
        self.skip = nn.Conv1d(in_channels, out_channels, 1, stride=stride)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.silu(self.body(inputs) + self.skip(inputs))


class ConvSeriesBackbone(nn.Module):
    """Residual 1-D convolutions, then mean and max pooling over the valid steps."""

    def __init__(self, channels: int, width: int, depth: int, feature_dim: int):
        super().__init__()
        widths = [min(width * 2**i, width * 4) for i in range(depth)]
        blocks: list[nn.Module] = []
        in_channels = channels + 1  # values plus the observed-mask row
        for index, out_channels in enumerate(widths):
            blocks.append(ResidualBlock(in_channels, out_channels, stride=1 if index == 0 else 2))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.strides = 2 ** (depth - 1)
        self.project = nn.Sequential(nn.Linear(2 * in_channels, feature_dim), nn.SiLU())

    def forward(self, data: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        features = self.blocks(data)  # (B, C + 1, T) -> (B, W, T / strides)
        steps = features.shape[-1]
        if lengths is None:
            valid = torch.ones(features.shape[0], steps, dtype=torch.bool, device=features.device)
        else:
            reduced = torch.div(lengths + self.strides - 1, self.strides, rounding_mode="floor").clamp(1, steps)
            valid = torch.arange(steps, device=features.device).unsqueeze(0) < reduced.unsqueeze(1)  # (B, T')
        mask = valid.unsqueeze(1).to(features.dtype)  # (B, 1, T')
        mean = (features * mask).sum(-1) / mask.sum(-1)
        maximum = features.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(-1)
        return self.project(torch.cat([mean, maximum], dim=1))  # (B, 2W) -> (B, feature_dim)


class ConvSeriesDecoder(Decoder):
    """Linear layer to a short sequence, then transposed convolutions to (C, length).

    The likelihood is Gaussian with a learned standard deviation per channel, scored only
    on observed steps inside each series' length.
    """

    def __init__(self, latent_dim: int, channels: int, length: int, width: int, depth: int):
        super().__init__()
        self.channels = channels
        self.length = length
        upsamplings = depth - 1
        self.start = math.ceil(length / 2**upsamplings)
        widths = list(reversed([min(width * 2**i, width * 4) for i in range(depth)]))
        self.start_channels = widths[0]
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * self.start), nn.SiLU())
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose1d(in_channels, out_channels, 4, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.Conv1d(widths[-1], channels, 5, padding=2))
        self.upsample = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((channels,), math.log(0.3)))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Return the mean series (B, C, length)."""
        features = self.project(latents).view(-1, self.start_channels, self.start)  # (B, W, t0)
        return self.upsample(features)[..., : self.length]  # (B, C, t0 * 2**upsamplings) -> (B, C, length)

    def log_likelihood(self, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
        mean = self.forward(latents)
        steps = batch.data.shape[-1]
        target, observed = batch.data[:, : self.channels, :steps], batch.data[:, self.channels, :steps]  # (B, C, T), (B, T)
        mean = mean[..., :steps]
        if batch.lengths is not None:
            inside = torch.arange(steps, device=mean.device).unsqueeze(0) < batch.lengths.unsqueeze(1)
            observed = observed * inside
        log_std = self.log_std.clamp_min(_MIN_LOG_STD).view(1, -1, 1)  # (1, C, 1)
        log_probs = -0.5 * ((target - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        return (log_probs * observed.unsqueeze(1)).sum(dim=(1, 2))

    def generate(self, latents: torch.Tensor, *, temperature: float = 0.0, generator: torch.Generator | None = None) -> ModalityBatch:
        mean = self.forward(latents)
        if temperature > 0:
            std = self.log_std.clamp_min(_MIN_LOG_STD).exp().view(1, -1, 1)
            mean = mean + temperature * std * torch.randn(mean.shape, generator=generator, device=mean.device)
        observed = torch.ones(mean.shape[0], 1, mean.shape[-1], device=mean.device)
        data = torch.cat([mean, observed], dim=1)  # (B, C + 1, length)
        present = torch.ones(latents.shape[0], dtype=torch.bool, device=latents.device)
        lengths = torch.full((latents.shape[0],), self.length, dtype=torch.long, device=latents.device)
        return ModalityBatch(data, present, lengths)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)
