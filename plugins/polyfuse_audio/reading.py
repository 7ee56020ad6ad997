"""Reading audio files and in-memory waveforms into fixed-length mono float32 clips.

Files go through soundfile (libsndfile), so WAV, FLAC, OGG and the other formats it reads
work at any sample rate, bit depth and channel count. In-memory values may be
``(waveform, sample_rate)`` tuples, Hugging Face ``{"array", "sampling_rate"}`` dicts, or
bare numpy arrays and torch tensors, which are taken to be at the configured sample rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from polyfuse.modality import RecordSource

# scipy's resample_poly designs its low-pass filter with this many zero crossings on each side.
_RESAMPLE_HALF_WIDTH = 10
_ACCEPTED_VALUES = "a file path, a (waveform, sample_rate) tuple, a {'array', 'sampling_rate'} dict, a numpy array or a torch tensor"


@dataclass(frozen=True)
class ClipSettings:
    """Target rate, fixed length and peak normalisation that turn a waveform into a clip."""

    sample_rate: int  # target rate in Hz
    num_samples: int  # fixed clip length in samples
    normalize_peak: bool  # scale each clip so its maximum absolute sample is 1


def read_value(value: Any, settings: ClipSettings, source: RecordSource, field: str) -> np.ndarray:
    """Read a path or an in-memory waveform into a clip of shape (num_samples,), float32."""
    channel_axis = None
    if isinstance(value, (str, Path)):
        samples, rate = read_file(value, settings, source, field)
        channel_axis = 1
    elif isinstance(value, tuple):
        samples, rate = _unpack_tuple(value, source, field)
    elif isinstance(value, Mapping):
        samples, rate = _unpack_mapping(value, source, field)
    elif isinstance(value, (np.ndarray, torch.Tensor)):
        samples, rate = value, settings.sample_rate
    else:
        raise source.error(field, f"unsupported audio value of type {type(value).__name__}", fix=f"Pass {_ACCEPTED_VALUES}")
    rate = _check_sample_rate(rate, source, field)
    return make_clip(to_mono(samples, source, field, channel_axis), rate, settings)


def read_file(value: str | Path, settings: ClipSettings, source: RecordSource, field: str) -> tuple[np.ndarray, int]:
    """Read the start of an audio file that the clip needs: (frames, channels) float32 and its rate."""
    path = source.resolve_file(value, field)
    try:
        with soundfile.SoundFile(path) as audio:
            rate = audio.samplerate
            frames = _frames_to_read(rate, settings)
            samples = audio.read(frames=frames, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise source.error(
            field,
            f"libsndfile failed to read the audio file ({error.error_string})",
            path,
            "Check that the file is complete, or convert it to WAV, FLAC or OGG",
        ) from error
    except TypeError as error:
        # soundfile raises TypeError for headerless RAW files, which need the rate and channels up front.
        raise source.error(field, f"audio file has no header that gives its format ({error})", path, "Convert it to WAV, FLAC or OGG") from error
    if samples.shape[0] == 0:
        raise source.error(field, "audio file has no frames", path, "Replace the file or remove the field from this record")
    if not np.isfinite(samples).all():
        count = int((~np.isfinite(samples)).sum())
        raise source.error(field, f"audio file contains {count} NaN or infinite samples", path, "Replace the file")
    return samples, rate


def to_mono(
    samples: np.ndarray | torch.Tensor, source: RecordSource, field: str, channel_axis: int | None = None
) -> np.ndarray:
    """Downmix a 1-D or 2-D waveform to float32 mono by averaging its channels.

    Without ``channel_axis``, a 2-D array is (channels, samples) when its first axis is the
    shorter one or the axes are equal, and (samples, channels) otherwise, so both the torch
    and the soundfile layouts work. Integer arrays are read as PCM and scaled to [-1, 1).
    """
    array = _to_numpy(samples)
    described = f"shape {array.shape} dtype {array.dtype}"
    if array.ndim not in (1, 2):
        raise source.error(
            field,
            f"waveform must be 1-D (samples,) or 2-D (channels, samples), got {described}",
            fix="Pass a mono waveform, or one row or column per channel",
        )
    if array.size == 0:
        raise source.error(field, f"waveform has no samples, got {described}", fix="Pass at least one sample")
    floats = _pcm_to_float(array, source, field)
    if not np.isfinite(floats).all():
        count = int((~np.isfinite(floats)).sum())
        raise source.error(field, f"waveform contains {count} NaN or infinite samples ({described})", fix="Replace or drop those samples")
    if floats.ndim == 1:
        return floats
    if channel_axis is None:
        channel_axis = 0 if floats.shape[0] <= floats.shape[1] else 1
    return floats.mean(axis=channel_axis, dtype=np.float32)


def make_clip(mono: np.ndarray, rate: int, settings: ClipSettings) -> np.ndarray:
    """Resample to the target rate, keep the first ``num_samples``, normalise the peak, then pad."""
    if rate != settings.sample_rate:
        divisor = math.gcd(rate, settings.sample_rate)
        mono = resample_poly(mono, settings.sample_rate // divisor, rate // divisor).astype(np.float32, copy=False)
    clip = mono[: settings.num_samples]
    if settings.normalize_peak:
        peak = float(np.abs(clip).max())
        if peak > 0:
            clip = clip / peak
    # Silence at the end, after normalisation, so the padding cannot change the peak.
    padded = np.zeros(settings.num_samples, dtype=np.float32)
    padded[: clip.shape[0]] = clip
    return padded


def _frames_to_read(rate: int, settings: ClipSettings) -> int:
    # Reading only the start keeps long recordings cheap. The margin covers the resampling
    # filter, so the kept samples equal those of resampling the whole file.
    needed = math.ceil(settings.num_samples * rate / settings.sample_rate)
    if rate == settings.sample_rate:
        return needed
    divisor = math.gcd(rate, settings.sample_rate)
    up, down = settings.sample_rate // divisor, rate // divisor
    return needed + math.ceil(_RESAMPLE_HALF_WIDTH * max(up, down) / up) + 1


def _unpack_tuple(value: tuple, source: RecordSource, field: str) -> tuple[Any, Any]:
    if len(value) != 2:
        raise source.error(field, f"audio tuple must be (waveform, sample_rate), got {len(value)} items", fix=f"Pass {_ACCEPTED_VALUES}")
    return value[0], value[1]


def _unpack_mapping(value: Mapping, source: RecordSource, field: str) -> tuple[Any, Any]:
    missing = [key for key in ("array", "sampling_rate") if key not in value]
    if missing:
        raise source.error(
            field,
            f"audio dict is missing {', '.join(repr(key) for key in missing)}; it has keys {sorted(map(str, value))}",
            fix="Pass {'array': waveform, 'sampling_rate': rate}, as Hugging Face datasets decode audio",
        )
    return value["array"], value["sampling_rate"]


def _check_sample_rate(rate: Any, source: RecordSource, field: str) -> int:
    is_number = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not is_number or not math.isfinite(rate) or rate <= 0 or rate != int(rate):
        raise source.error(field, "sample rate must be a positive whole number of Hz", rate, "Pass the rate as an int, for example 16000")
    return int(rate)


def _to_numpy(samples: Any) -> np.ndarray:
    if isinstance(samples, torch.Tensor):
        tensor = samples.detach().cpu()
        # numpy has no bfloat16, so low-precision floats are widened first.
        return (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    return np.asarray(samples)


def _pcm_to_float(array: np.ndarray, source: RecordSource, field: str) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if array.dtype == np.uint8:
        # 8-bit PCM is unsigned with silence at 128, as in WAV files.
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.signedinteger):
        full_scale = float(2 ** (8 * array.dtype.itemsize - 1))
        return (array.astype(np.float64) / full_scale).astype(np.float32)
    raise source.error(
        field,
        f"waveform dtype must be float or integer PCM, got {array.dtype} (shape {array.shape})",
        fix="Convert the waveform to float32 in [-1, 1]",
    )
