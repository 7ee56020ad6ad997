"""Convolutional encoder backbone and decoder over log-mel spectrograms."""

from __future__ import annotations

import math

import torch
from torch import nn

from polyfuse.modality import Decoder, ModalityBatch

from .features import LogMelSpectrogram, draw_device, normalize_peak

# Each axis is halved until it is at most this many bins or frames.
_MAX_FINAL_SIZE = 4
# Peak amplitude of generated waveforms, below full scale so that a 16-bit export has headroom.
GENERATED_PEAK = 0.9


def plan_strides(size: tuple[int, int]) -> list[tuple[int, int]]:
    """Return the (mel, time) stride of each downsampling layer for a (n_mels, frames) map.

    An axis that is already small keeps stride 1, so a long clip does not squash its few
    mel bins to one and a short clip does not squash its few frames.
    """
    steps = [max(0, math.ceil(math.log2(side / _MAX_FINAL_SIZE))) for side in size]
    return [(2 if layer < steps[0] else 1, 2 if layer < steps[1] else 1) for layer in range(max(1, *steps))]


def channel_widths(width: int, layers: int) -> list[int]:
    """Return the channels of each layer: half of ``width`` first, doubling up to twice ``width``.

    The widths stay small because the encoder must train on a few CPU cores.
    """
    return [max(1, min(width * 2**layer // 2, 2 * width)) for layer in range(layers)]


def downsampled_size(size: tuple[int, int], strides: list[tuple[int, int]]) -> tuple[int, int]:
    height, width = size
    for stride_height, stride_width in strides:
        height, width = math.ceil(height / stride_height), math.ceil(width / stride_width)
    return height, width


class MelBackbone(nn.Module):
    """Log-mel front end, stride-2 convolutions with SiLU, then a linear layer to ``feature_dim``.

    There is no batch normalisation, because a batch may hold a single present row.
    """

    def __init__(self, front_end: LogMelSpectrogram, size: tuple[int, int], width: int, feature_dim: int):
        super().__init__()
        self.front_end = front_end
        strides = plan_strides(size)
        layers: list[nn.Module] = []
        in_channels = 1
        for stride, out_channels in zip(strides, channel_widths(width, len(strides))):
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.SiLU()]
            in_channels = out_channels
        self.convolutions = nn.Sequential(*layers)
        height, width_frames = downsampled_size(size, strides)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * height * width_frames, feature_dim), nn.SiLU())

    def forward(self, data: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        log_mel = self.front_end(data)  # (B, 1, num_samples) -> (B, 1, n_mels, frames)
        return self.project(self.convolutions(log_mel))  # (B, C, h, w) -> (B, feature_dim)


class MelDecoder(Decoder):
    """Linear layer to a small map, transposed convolutions up to the log-mel, Griffin-Lim to audio.

    The likelihood is a Gaussian with fixed ``gaussian_std`` on the normalised log-mel of the
    batch waveform, which the decoder's own front end computes.
    """

    def __init__(
        self,
        latent_dim: int,
        front_end: LogMelSpectrogram,
        size: tuple[int, int],
        num_samples: int,
        width: int,
        gaussian_std: float,
        griffin_lim_iterations: int,
        architecture: str = "conv",
        hidden: int = 512,
    ):
        super().__init__()
        self.front_end = front_end
        self.size = size
        self.num_samples = num_samples
        self.gaussian_std = gaussian_std
        self.griffin_lim_iterations = griffin_lim_iterations
        self.architecture = architecture
        if architecture == "mlp":
            # Several times cheaper than transposed convolutions on a CPU, at some loss of detail.
            self.body = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, size[0] * size[1]))
        else:
            self.body = _transposed_convolutions(latent_dim, size, width)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Return the mean normalised log-mel (B, 1, n_mels, frames)."""
        if self.architecture == "mlp":
            return self.body(latents).view(-1, 1, *self.size)  # (B, n_mels * frames) -> (B, 1, n_mels, frames)
        output = self.body(latents)  # (B, 1, h0 * 2**steps, w0 * 2**steps), at least the target size
        return output[..., : self.size[0], : self.size[1]]

    def log_likelihood(self, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
        mean = self.forward(latents)
        target = self.front_end(batch.data)  # (B, 1, num_samples) -> (B, 1, n_mels, frames)
        log_probs = -0.5 * ((target - mean) / self.gaussian_std) ** 2 - math.log(self.gaussian_std) - 0.5 * math.log(2 * math.pi)
        return log_probs.flatten(1).sum(dim=1)  # (B, 1, n_mels, frames) -> (B,)

    def generate(self, latents: torch.Tensor, *, temperature: float = 0.0, generator: torch.Generator | None = None) -> ModalityBatch:
        """Decode latents (B, D) into waveforms (B, 1, num_samples) peaking at 0.9.

        ``generator`` also seeds the initial Griffin-Lim phase, so the same generator state
        gives the same waveform even at temperature 0.
        """
        log_mel = self.forward(latents)
        if temperature > 0:
            noise = torch.randn(log_mel.shape, generator=generator, device=draw_device(generator, log_mel.device)).to(log_mel.device)
            log_mel = log_mel + temperature * self.gaussian_std * noise
        waveform = self.front_end.invert(log_mel, self.num_samples, self.griffin_lim_iterations, generator)
        waveform = normalize_peak(waveform, GENERATED_PEAK).unsqueeze(1)  # (B, num_samples) -> (B, 1, num_samples)
        present = torch.ones(latents.shape[0], dtype=torch.bool, device=latents.device)
        return ModalityBatch(waveform, present)


class _Unflatten(nn.Module):
    """Reshape (B, C * H * W) features to (B, C, H, W)."""

    def __init__(self, channels: int, size: tuple[int, int]):
        super().__init__()
        self.channels, self.size = channels, size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.view(-1, self.channels, *self.size)  # (B, C * h * w) -> (B, C, h, w)


def _transposed_convolutions(latent_dim: int, size: tuple[int, int], width: int) -> nn.Sequential:
    """Linear layer to a small map, then transposed convolutions up to at least (1, n_mels, frames)."""
    strides = list(reversed(plan_strides(size)))
    widths = list(reversed(channel_widths(width, len(strides))))
    start = downsampled_size(size, strides)
    layers: list[nn.Module] = [nn.Linear(latent_dim, widths[0] * start[0] * start[1]), nn.SiLU(), _Unflatten(widths[0], start)]
    # The last layer maps straight to one channel, because a multi-channel map at full
    # resolution would dominate the training time on a CPU.
    out_widths = widths[1:] + [1]
    for layer, (stride, in_channels, out_channels) in enumerate(zip(strides, widths, out_widths)):
        # Kernel 4 with stride 2 doubles an axis with even overlap, and kernel 3 with stride 1 keeps its size.
        kernel = (stride[0] + 2, stride[1] + 2)
        layers.append(nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=stride, padding=1))
        if layer < len(strides) - 1:
            layers.append(nn.SiLU())  # not after the last layer, because it outputs an unbounded Gaussian mean
    return nn.Sequential(*layers)
