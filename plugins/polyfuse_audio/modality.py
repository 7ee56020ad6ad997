"""The audio modality: sound files or waveforms to fixed-length mono clips, encoded as log-mels.

The preprocessed tensor is the waveform (1, num_samples), so training can augment audio in
memory. The log-mel front end runs inside the encoder and the decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

from polyfuse.config import require
from polyfuse.modality import Encoder, Modality, ModalityBatch, ModalityConfig, RecordSource
from polyfuse.persistence import atomic_write

from .features import LogMelSpectrogram, count_frames
from .networks import MelBackbone, MelDecoder
from .reading import ClipSettings, read_value


@dataclass(frozen=True)
class AudioConfig(ModalityConfig):
    """Settings of the audio modality."""

    sample_rate: int = 16000  # rate in Hz that every clip is resampled to
    duration: float = 1.0  # clip length in seconds, longer clips are cut and shorter ones padded with silence
    normalize_peak: bool = True  # scale each clip so its maximum absolute sample is 1, before padding
    n_fft: int = 512  # STFT window and FFT size, in samples
    hop_length: int = 256  # STFT hop, in samples, at most n_fft // 2
    n_mels: int = 64  # mel bands, at most n_fft // 2 + 1
    f_min: float = 0.0  # lowest mel band edge, in Hz
    f_max: float | None = None  # highest mel band edge in Hz, or None for sample_rate / 2
    top_db: float = 80.0  # dynamic range kept below each clip's loudest mel bin, in dB
    gaussian_std: float = 0.2  # standard deviation of the log-mel likelihood, in normalised units (range [-1, 1])
    width: int = 32  # channel scale of the convolutions: layers use width / 2 up to 2 * width
    decoder: str = "conv"  # "conv" (transposed convolutions) or "mlp" (two linear layers, faster on CPUs)
    decoder_hidden: int = 512  # hidden width of the "mlp" decoder
    griffin_lim_iterations: int = 60  # phase-recovery iterations when decoding to audio, >= 0
    augment_gain_db: float = 0.0  # maximum random gain in training, in dB either way
    augment_shift: float = 0.0  # maximum random time shift in training, as a fraction of the clip, in [0, 1)
    augment_noise_probability: float = 0.0  # probability of adding white noise to a training clip, in [0, 1]
    augment_snr_db: tuple[float, float] = (0.0, 30.0)  # (min, max) signal-to-noise ratio of that noise, in dB

    def __post_init__(self) -> None:
        super().__post_init__()

        require(_is_int(self.sample_rate) and self.sample_rate > 0, f"sample_rate must be a positive int (Hz), got {self.sample_rate!r}")
        require(_is_number(self.duration) and self.duration > 0, f"duration must be > 0 seconds, got {self.duration!r}")
        require(self.num_samples >= 1, f"duration must give at least one sample at sample_rate {self.sample_rate}, got {self.duration} s")
        require(isinstance(self.normalize_peak, bool), f"normalize_peak must be true or false, got {self.normalize_peak!r}")

        require(_is_int(self.n_fft) and self.n_fft >= 2, f"n_fft must be an int >= 2, got {self.n_fft!r}")
        require(
            _is_int(self.hop_length) and 1 <= self.hop_length <= self.n_fft // 2,
            f"hop_length must be an int in [1, n_fft // 2 = {self.n_fft // 2}] so that windows overlap enough "
            f"for the inverse STFT, got {self.hop_length!r}",
        )
        require(
            _is_int(self.n_mels) and 1 <= self.n_mels <= self.n_fft // 2 + 1,
            f"n_mels must be an int in [1, n_fft // 2 + 1 = {self.n_fft // 2 + 1}], got {self.n_mels!r}",
        )
        nyquist = self.sample_rate / 2
        require(
            self.f_max is None or (_is_number(self.f_max) and 0 < self.f_max <= nyquist),
            f"f_max must be None or in (0, sample_rate / 2 = {nyquist}] Hz, got {self.f_max!r}",
        )
        require(
            _is_number(self.f_min) and 0 <= self.f_min < self.max_frequency,
            f"f_min must be in [0, {self.max_frequency}) Hz (below f_max or sample_rate / 2), got {self.f_min!r}",
        )
        require(_is_number(self.top_db) and self.top_db > 0, f"top_db must be > 0 dB, got {self.top_db!r}")

        require(_is_number(self.gaussian_std) and self.gaussian_std > 0, f"gaussian_std must be > 0, got {self.gaussian_std!r}")
        require(_is_int(self.width) and self.width > 0, f"width must be a positive int, got {self.width!r}")
        require(self.decoder in ("conv", "mlp"), f"decoder must be 'conv' or 'mlp', got {self.decoder!r}")
        require(_is_int(self.decoder_hidden) and self.decoder_hidden > 0, f"decoder_hidden must be a positive int, got {self.decoder_hidden!r}")
        require(
            _is_int(self.griffin_lim_iterations) and self.griffin_lim_iterations >= 0,
            f"griffin_lim_iterations must be an int >= 0, got {self.griffin_lim_iterations!r}",
        )

        require(_is_number(self.augment_gain_db) and self.augment_gain_db >= 0, f"augment_gain_db must be >= 0 dB, got {self.augment_gain_db!r}")
        require(_is_number(self.augment_shift) and 0 <= self.augment_shift < 1, f"augment_shift must be in [0, 1), got {self.augment_shift!r}")
        require(
            _is_number(self.augment_noise_probability) and 0 <= self.augment_noise_probability <= 1,
            f"augment_noise_probability must be in [0, 1], got {self.augment_noise_probability!r}",
        )
        require(
            isinstance(self.augment_snr_db, tuple)
            and len(self.augment_snr_db) == 2
            and all(_is_number(value) for value in self.augment_snr_db)
            and self.augment_snr_db[0] <= self.augment_snr_db[1],
            f"augment_snr_db must be a (min, max) pair of finite dB values with min <= max, got {self.augment_snr_db!r}",
        )

    @property
    def num_samples(self) -> int:
        """Clip length in samples: ``round(sample_rate * duration)``."""
        return round(self.sample_rate * self.duration)

    @property
    def max_frequency(self) -> float:
        """Highest mel band edge in Hz: ``f_max``, or ``sample_rate / 2`` when it is None."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    @property
    def num_frames(self) -> int:
        """Log-mel frames per clip."""
        return count_frames(self.num_samples, self.n_fft, self.hop_length)


@dataclass
class AudioClip:
    """A decoded mono clip, as :meth:`AudioModality.postprocess` returns it."""

    waveform: np.ndarray  # (num_samples,) float32, nominally in [-1, 1]
    sample_rate: int  # Hz


class AudioModality(Modality):
    """Audio from files that soundfile reads or from in-memory waveforms, saved as 16-bit WAV.

    A bare numpy array or torch tensor carries no sample rate, so it is taken to be at
    ``config.sample_rate``. Pass ``(waveform, sample_rate)`` or ``{"array": ..., "sampling_rate": ...}``
    for audio at another rate.
    """

    name = "audio"
    config_class = AudioConfig
    file_suffix = ".wav"
    description = "audio (WAV, FLAC, OGG and any format libsndfile reads) as fixed-length mono clips"
    # "snr": white noise added at this signal-to-noise ratio in dB (lower is noisier).
    corruptions = {"snr": (20.0, 10.0, 5.0, 0.0, -5.0)}
    config: AudioConfig

    def load(self, value: Any, source: RecordSource) -> np.ndarray:
        """Read a path or in-memory waveform into a clip (num_samples,) float32 at the configured rate."""
        config = self.config
        settings = ClipSettings(config.sample_rate, config.num_samples, config.normalize_peak)
        return read_value(value, settings, source, self.field)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32)).unsqueeze(0)  # (num_samples,) -> (1, num_samples)

    def augment(self, batch: ModalityBatch, generator: torch.Generator) -> ModalityBatch:
        """Apply a random time shift, gain and white noise at a random SNR, per row.

        The log-mel is normalised to each clip's maximum, so gain changes it only near the
        power floor. Gain matters for backbones that read the waveform itself.
        """
        config = self.config
        enabled = config.augment_shift > 0 or config.augment_gain_db > 0 or config.augment_noise_probability > 0
        if not enabled or batch.data.numel() == 0:
            return batch
        waveform = batch.data
        if config.augment_shift > 0:
            max_shift = config.augment_shift * waveform.shape[-1]
            waveform = _shift(waveform, _uniform(waveform, -max_shift, max_shift, generator).round().long())
        if config.augment_gain_db > 0:
            gain_db = _uniform(waveform, -config.augment_gain_db, config.augment_gain_db, generator)
            waveform = waveform * torch.pow(10.0, gain_db / 20.0).view(-1, 1, 1)  # (B,) -> (B, 1, 1)
        if config.augment_noise_probability > 0:
            waveform = self._add_noise(waveform, generator)
        # Absent rows must stay zero whatever the random draws did.
        waveform = waveform * batch.present.to(waveform.dtype).view(-1, 1, 1)  # (B,) -> (B, 1, 1)
        return ModalityBatch(waveform, batch.present, batch.lengths)

    def corrupt(self, item: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
        if kind == "snr":
            # The SNR is relative to the clip's mean power over its whole padded length.
            signal_power = item.square().mean()
            noise_std = torch.sqrt(signal_power / 10.0 ** (level / 10.0))
            return item + noise_std * torch.randn(item.shape, generator=generator, device=item.device)
        return super().corrupt(item, kind, level, generator)

    def build_encoder(self, latent_dim: int) -> Encoder:
        config = self.config
        backbone = MelBackbone(self._front_end(), (config.n_mels, config.num_frames), config.width, config.feature_dim)
        return Encoder(backbone, config.feature_dim, latent_dim)

    def build_decoder(self, latent_dim: int) -> MelDecoder:
        config = self.config
        return MelDecoder(
            latent_dim,
            self._front_end(),
            (config.n_mels, config.num_frames),
            config.num_samples,
            config.width,
            config.gaussian_std,
            config.griffin_lim_iterations,
            config.decoder,
            config.decoder_hidden,
        )

    def postprocess(self, data: torch.Tensor, length: int | None = None) -> AudioClip:
        """Turn one waveform (1, num_samples) into an :class:`AudioClip`, cut to ``length`` samples if given."""
        waveform = data.detach().float().cpu().reshape(-1).numpy()  # (1, num_samples) -> (num_samples,)
        if length is not None:
            waveform = waveform[:length]
        return AudioClip(np.ascontiguousarray(waveform, dtype=np.float32), self.config.sample_rate)

    def save(self, value: AudioClip, path: str | Path) -> Path:
        """Write a clip as a 16-bit PCM WAV file. Samples outside [-1, 1] are clipped."""
        if not isinstance(value, AudioClip):
            raise TypeError(f"save expects an AudioClip from postprocess, got {type(value).__name__}. Call postprocess first")
        samples = np.clip(value.waveform, -1.0, 1.0)
        # The temporary file ends in .tmp, so soundfile cannot infer the format from the name.
        return atomic_write(
            Path(path),
            lambda temporary: soundfile.write(temporary, samples, value.sample_rate, subtype="PCM_16", format="WAV"),
        )

    def _front_end(self) -> LogMelSpectrogram:
        """Return the front end that this modality's encoder and decoder share, so a batch is transformed once."""
        front_end = getattr(self, "_shared_front_end", None)
        if front_end is None:
            config = self.config
            front_end = LogMelSpectrogram(
                config.sample_rate, config.n_fft, config.hop_length, config.n_mels, config.f_min, config.max_frequency, config.top_db
            )
            self._shared_front_end = front_end
        return front_end

    def _add_noise(self, waveform: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        config = self.config
        chosen = _uniform(waveform, 0.0, 1.0, generator) < config.augment_noise_probability  # (B,)
        snr_db = _uniform(waveform, *config.augment_snr_db, generator)
        # The SNR is relative to each clip's own mean power, so silent clips get no noise.
        signal_power = waveform.square().mean(dim=(1, 2))  # (B,)
        noise_std = torch.sqrt(signal_power / torch.pow(10.0, snr_db / 10.0)) * chosen
        noise = torch.randn(waveform.shape, generator=generator, device=waveform.device)
        return waveform + noise * noise_std.view(-1, 1, 1)  # (B,) -> (B, 1, 1)


def _shift(waveform: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Delay each row of (B, 1, num_samples) by ``shifts`` samples (negative moves it earlier), filling with zeros."""
    num_samples = waveform.shape[-1]
    source_index = torch.arange(num_samples, device=waveform.device) - shifts.view(-1, 1)  # (B, num_samples)
    valid = (source_index >= 0) & (source_index < num_samples)
    gathered = waveform.gather(-1, source_index.clamp(0, num_samples - 1).unsqueeze(1))  # index (B, 1, num_samples)
    return gathered * valid.unsqueeze(1)  # (B, num_samples) -> (B, 1, num_samples)


def _uniform(waveform: torch.Tensor, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """Draw one value per row of ``waveform`` uniformly from [low, high): shape (B,)."""
    return low + (high - low) * torch.rand(waveform.shape[0], generator=generator, device=waveform.device)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
