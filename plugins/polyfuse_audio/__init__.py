"""Built-in audio modality for polyfuse: sound files or waveforms to fixed-length mono clips, encoded as log-mels."""

from .features import LogMelSpectrogram, griffin_lim
from .modality import AudioClip, AudioConfig, AudioModality

__all__ = ["AudioClip", "AudioConfig", "AudioModality", "LogMelSpectrogram", "griffin_lim"]
