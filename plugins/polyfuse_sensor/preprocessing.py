"""Gap filling, resampling, length fitting and normalisation of time series.

The output of :func:`prepare_series` is the preprocessed tensor layout of the sensor
modality: (channels + 1, T) where the last row marks observed steps (1) and gaps (0).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from .reading import Series

# Rate ratios are approximated by fractions with at most this denominator for resample_poly.
_MAX_RATIO_DENOMINATOR = 1000
# A normalisation scale below this is treated as a constant channel, to avoid dividing by ~0.
_MIN_SCALE = 1e-6


def fill_gaps(values: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Return values without NaN and the observed mask (T,) (True where every channel is finite).

    ``interpolate`` fills gaps linearly per channel (edges take the nearest value);
    ``mask`` fills them with zeros. The mask is the same for both policies, so the
    likelihood never scores filled values.
    """
    observed = np.isfinite(values).all(axis=1)
    filled = values.copy()
    steps = np.arange(len(values))
    for channel in range(values.shape[1]):
        column = values[:, channel]
        finite = np.isfinite(column)
        if finite.all():
            continue
        if policy == "interpolate":
            filled[:, channel] = np.interp(steps, steps[finite], column[finite])
        else:
            filled[~finite, channel] = 0.0
    return filled, observed


def to_uniform_rate(series: Series, values: np.ndarray, observed: np.ndarray, target_rate: float, default_rate: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Resample values (T, C) and the observed mask to ``target_rate`` Hz.

    Series with timestamps are interpolated onto a uniform grid; series with a rate use
    polyphase filtering (anti-aliased when downsampling). ``default_rate`` applies to
    series that carry no rate; ``None`` means they are already at ``target_rate``.
    """
    if series.timestamps is not None:
        if len(series.timestamps) == 1:
            return values, observed
        start, stop = float(series.timestamps[0]), float(series.timestamps[-1])
        grid = start + np.arange(int(np.floor((stop - start) * target_rate)) + 1) / target_rate
        resampled = np.stack([np.interp(grid, series.timestamps, values[:, c]) for c in range(values.shape[1])], axis=1)
        mask = np.interp(grid, series.timestamps, observed.astype(np.float64)) >= 0.5
        return resampled, mask

    rate = series.sample_rate or default_rate or target_rate
    if np.isclose(rate, target_rate) or len(values) < 2:
        return values, observed
    ratio = Fraction(target_rate / rate).limit_denominator(_MAX_RATIO_DENOMINATOR)
    resampled = resample_poly(values, ratio.numerator, ratio.denominator, axis=0, padtype="line")
    count = len(resampled)
    source_positions = np.arange(count) * (len(values) / count)
    mask = observed[np.clip(np.round(source_positions).astype(int), 0, len(observed) - 1)]
    return resampled, mask


def stretch(values: np.ndarray, observed: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate a series (T, C) onto ``length`` evenly spaced steps."""
    if len(values) == length:
        return values, observed
    source = np.linspace(0.0, 1.0, len(values)) if len(values) > 1 else np.zeros(1)
    target = np.linspace(0.0, 1.0, length)
    if len(values) == 1:
        return np.repeat(values, length, axis=0), np.repeat(observed, length)
    stretched = np.stack([np.interp(target, source, values[:, c]) for c in range(values.shape[1])], axis=1)
    mask = np.interp(target, source, observed.astype(np.float64)) >= 0.5
    return stretched, mask


def normalise(values: np.ndarray, observed: np.ndarray, mode: str, channels: tuple[int, ...]) -> np.ndarray:
    """Normalise the selected channels of one series using its observed steps.

    ``series`` removes each channel's mean and divides all selected channels by their
    largest standard deviation, which keeps the ratios between channels (the aspect of a
    pen trajectory); ``channel`` z-scores each channel on its own; ``none`` returns a copy.
    """
    result = values.copy()
    if mode == "none":
        return result
    selected = list(channels) if channels else list(range(values.shape[1]))
    reference = values[observed] if observed.any() else values
    means = reference[:, selected].mean(axis=0)
    stds = reference[:, selected].std(axis=0)
    if mode == "series":
        scale = max(float(stds.max()), _MIN_SCALE)
        result[:, selected] = (values[:, selected] - means) / scale
    else:
        result[:, selected] = (values[:, selected] - means) / np.maximum(stds, _MIN_SCALE)
    return result
