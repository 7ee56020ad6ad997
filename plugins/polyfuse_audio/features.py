"""Log-mel front end (waveform to normalised log-mel) and its inversion back to a waveform.

The front end has no trainable weights. The encoder backbone runs it on each batch, and the
decoder runs it to compute its targets, so augmentation can work on the cached waveforms.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch
from torch import nn

# Power floor before taking decibels, so silent frames give -100 dB instead of -inf.
POWER_FLOOR = 1e-10
# Momentum of fast Griffin-Lim, the default of torchaudio's GriffinLim transform.
GRIFFIN_LIM_MOMENTUM = 0.99
# Keeps the phase of zero-magnitude bins finite when dividing by the magnitude.
_PHASE_EPSILON = 1e-16


def count_frames(num_samples: int, n_fft: int, hop_length: int) -> int:
    """Return how many STFT frames ``torch.stft(center=True)`` gives for ``num_samples`` samples."""
    padded = num_samples + 2 * (n_fft // 2)
    return 1 + (padded - n_fft) // hop_length


class LogMelSpectrogram(nn.Module):
    """Front end from waveforms (B, 1, num_samples) to log-mel spectrograms (B, 1, n_mels, frames) in [-1, 1].

    Each clip is scaled to its own maximum: 1 is the loudest mel bin of the clip and -1 is
    ``top_db`` decibels below it (quieter bins are raised to that floor).
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        f_min: float,
        f_max: float,
        top_db: float,
    ):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_fft = n_fft
        self.hop_length = hop_length
        self.top_db = top_db
        mel_filters = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=f_min,
            max_frequency=f_max,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # (n_fft // 2 + 1, n_mels)
        # The buffers are derived from the config, so they stay out of saved state dicts.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel_filters", torch.from_numpy(mel_filters).float(), persistent=False)
        # The pseudo-inverse maps mel power back to linear-frequency power for Griffin-Lim.
        inverse_filters = np.linalg.pinv(mel_filters.T)  # (n_fft // 2 + 1, n_mels)
        self.register_buffer("inverse_mel_filters", torch.from_numpy(inverse_filters).float(), persistent=False)
        # The last input and output. The encoder and the decoder share this module and see the
        # same batch tensor in a training step, so the STFT runs once. A weak reference plus the
        # tensor's version counter means a new or modified tensor never hits the cache.
        self._last_input: weakref.ref | None = None
        self._last_version = -1
        self._last_output: torch.Tensor | None = None

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        cached = self._last_input() if self._last_input is not None else None
        if cached is waveform and waveform._version == self._last_version and not waveform.requires_grad:
            return self._last_output
        output = self._log_mel(waveform)
        if not waveform.requires_grad:
            self._last_input, self._last_version, self._last_output = weakref.ref(waveform), waveform._version, output
        return output

    def _log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        mel_power = self.mel_power(waveform)  # (B, n_mels, frames)
        decibels = 10.0 * torch.log10(mel_power.clamp(min=POWER_FLOOR))
        clip_max = decibels.amax(dim=(-2, -1), keepdim=True)  # (B, 1, 1)
        decibels = torch.maximum(decibels, clip_max - self.top_db)
        normalised = (decibels - clip_max) / self.top_db * 2.0 + 1.0
        return normalised.unsqueeze(1)  # (B, n_mels, frames) -> (B, 1, n_mels, frames)

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Return the mel power spectrogram (B, n_mels, frames) of waveforms (B, 1, num_samples)."""
        samples = waveform.reshape(waveform.shape[0], -1)  # (B, 1, num_samples) -> (B, num_samples)
        spectrum = _stft(samples, self.n_fft, self.hop_length, self.window)  # (B, n_fft // 2 + 1, frames)
        power = spectrum.real.square() + spectrum.imag.square()
        return torch.einsum("fm,bft->bmt", self.mel_filters, power)

    @torch.no_grad()
    def invert(
        self,
        log_mel: torch.Tensor,
        num_samples: int,
        iterations: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Estimate waveforms (B, num_samples) from normalised log-mels (B, 1, n_mels, frames).

        Loudness is relative: 0 dB is put at each clip's maximum, because the normalisation
        in :meth:`forward` drops the absolute level.
        """
        mel = log_mel.squeeze(1).clamp(-1.0, 1.0)  # (B, 1, n_mels, frames) -> (B, n_mels, frames)
        decibels = (mel - 1.0) / 2.0 * self.top_db
        mel_power = torch.pow(10.0, decibels / 10.0)
        # The pseudo-inverse can go below zero between filter centres, but power cannot.
        power = torch.einsum("fm,bmt->bft", self.inverse_mel_filters, mel_power).clamp(min=0.0)
        return griffin_lim(
            power.sqrt(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            length=num_samples,
            iterations=iterations,
            generator=generator,
        )


@torch.no_grad()
def griffin_lim(
    magnitude: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    window: torch.Tensor,
    length: int,
    iterations: int,
    momentum: float = GRIFFIN_LIM_MOMENTUM,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Recover waveforms (B, length) from STFT magnitudes (B, n_fft // 2 + 1, frames).

    This is fast Griffin-Lim from N. Perraudin, P. Balazs and P. L. Søndergaard, "A fast
    Griffin-Lim algorithm", IEEE WASPAA 2013. With c the estimate and t the projected
    spectrogram, t_n = stft(istft(|X| * phase(c_{n-1}))) and c_n = t_n + momentum * (t_n - t_{n-1}).
    The initial phase is uniform random, drawn from ``generator`` (the global generator when
    it is None). It is written here because torchaudio and librosa are not dependencies.
    """
    phase = _random_phase(magnitude.shape, magnitude.device, generator)
    previous = torch.zeros_like(phase)
    for _ in range(iterations):
        waveform = _istft(magnitude * phase, n_fft, hop_length, window, length)
        projected = _stft(waveform, n_fft, hop_length, window)
        accelerated = projected + momentum * (projected - previous)
        phase = accelerated / (accelerated.abs() + _PHASE_EPSILON)
        previous = projected
    return _istft(magnitude * phase, n_fft, hop_length, window, length)


def normalize_peak(waveform: torch.Tensor, peak: float) -> torch.Tensor:
    """Scale each row of (B, ..., num_samples) so its maximum absolute sample is ``peak``. Silent rows stay zero."""
    current = waveform.abs().flatten(1).amax(dim=1)  # (B,)
    scale = torch.where(current > 0, peak / current.clamp(min=torch.finfo(waveform.dtype).tiny), 0.0)
    return waveform * scale.view(-1, *([1] * (waveform.dim() - 1)))  # (B,) -> (B, 1, ..., 1)


def draw_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    """Return the generator's device, or ``fallback`` without a generator.

    Random numbers are drawn on the generator's device, so a CPU generator can also seed a decode on a GPU.
    """
    return generator.device if generator is not None else fallback


def _random_phase(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    angles = torch.rand(shape, generator=generator, device=draw_device(generator, device)).to(device) * (2 * math.pi)
    return torch.polar(torch.ones_like(angles), angles)


def _stft(samples: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    # The edges are padded with zeros instead of the default reflection, because reflection
    # needs more than n_fft // 2 samples and clips shorter than one window must work.
    return torch.stft(samples, n_fft, hop_length, window=window, center=True, pad_mode="constant", return_complex=True)


def _istft(spectrum: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, length: int) -> torch.Tensor:
    return torch.istft(spectrum, n_fft, hop_length, window=window, center=True, length=length)
