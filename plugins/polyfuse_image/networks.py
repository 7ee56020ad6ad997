"""Convolutional backbone and decoder for images of any size.

Both are sized for speed on CPUs: the encoder halves the resolution until the longer side
is at most 4 pixels, and the decoder starts from a map of at most 8 pixels per side so
that few layers run at full resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from polyfuse.modality import Decoder, ModalityBatch

_ENCODER_SMALLEST_SIDE = 4
_DECODER_START_SIDE = 8
_MAX_WIDTH_FACTOR = 4


def _halvings(size: tuple[int, int], smallest_side: int) -> int:
    return max(1, math.ceil(math.log2(max(size) / smallest_side)))


def _widths(width: int, count: int) -> list[int]:
    return [width * min(2**step, _MAX_WIDTH_FACTOR) for step in range(count)]


class ConvBackbone(nn.Module):
    """Stride-2 convolutions down to a small map, then a linear layer to ``feature_dim``."""

    def __init__(self, channels: int, size: tuple[int, int], width: int, feature_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, (height, width_px) = channels, size
        for out_channels in _widths(width, _halvings(size, _ENCODER_SMALLEST_SIDE)):
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.SiLU()]
            in_channels = out_channels
            height, width_px = math.ceil(height / 2), math.ceil(width_px / 2)
        self.convolutions = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * height * width_px, feature_dim), nn.SiLU())

    def forward(self, data: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.project(self.convolutions(data))  # (B, C, H, W) -> (B, feature_dim)


class ConvDecoder(Decoder):
    """Linear layer to a small map, then transposed convolutions up to (channels, H, W)."""

    def __init__(self, latent_dim: int, channels: int, size: tuple[int, int], width: int, likelihood: str, gaussian_std: float):
        super().__init__()
        steps = _halvings(size, _DECODER_START_SIDE)
        widths = list(reversed(_widths(width, steps)))
        self.size = size
        self.likelihood = likelihood
        self.gaussian_std = gaussian_std
        self.start = (math.ceil(size[0] / 2**steps), math.ceil(size[1] / 2**steps))
        self.start_channels = widths[0]
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * self.start[0] * self.start[1]), nn.SiLU())
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1))
        self.upsample = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Return pixel logits (Bernoulli) or means (Gaussian) of shape (B, C, H, W)."""
        features = self.project(latents).view(-1, self.start_channels, *self.start)  # (B, C0, h0, w0)
        output = self.upsample(features)  # (B, C, h0 * 2**steps, w0 * 2**steps)
        return _center_crop(output, self.size)

    def log_likelihood(self, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
        output = self.forward(latents)
        if self.likelihood == "bernoulli":
            log_probs = -F.binary_cross_entropy_with_logits(output, batch.data, reduction="none")
        else:
            log_probs = _gaussian_log_prob(batch.data, output, self.gaussian_std)
        return log_probs.flatten(1).sum(dim=1)

    def generate(self, latents: torch.Tensor, *, temperature: float = 0.0, generator: torch.Generator | None = None) -> ModalityBatch:
        output = self.forward(latents)
        if self.likelihood == "bernoulli":
            pixels = torch.sigmoid(output)
            if temperature > 0:
                pixels = torch.bernoulli(pixels, generator=generator)
        else:
            pixels = output
            if temperature > 0:
                noise = torch.randn(output.shape, generator=generator, device=output.device)
                pixels = output + temperature * self.gaussian_std * noise
        present = torch.ones(latents.shape[0], dtype=torch.bool, device=latents.device)
        return ModalityBatch(pixels.clamp(0.0, 1.0), present)


def _center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height, width = images.shape[-2:]
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return images[..., top : top + size[0], left : left + size[1]]


def _gaussian_log_prob(target: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    return -0.5 * ((target - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
