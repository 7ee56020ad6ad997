"""Reading multichannel time series from NPY, NPZ, CSV or memory, with their sample rate.

Every reader returns a :class:`Series`: values (T, C) float64 with NaN marking gaps, and
either a sample rate or per-step timestamps. Arrays are time-major: one row per step.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.modality import RecordSource

TIME_COLUMNS = ("time", "t", "timestamp", "seconds", "time_s")
SUFFIXES = (".npy", ".npz", ".csv")


@dataclass
class Series:
    """A time series as read, before gap filling and resampling."""

    values: np.ndarray  # (T, C) float64, NaN marks a missing value
    sample_rate: float | None  # Hz; None when ``timestamps`` give the time axis
    timestamps: np.ndarray | None = None  # (T,) seconds, strictly increasing
    channel_names: tuple[str, ...] = ()


def read_series(value: Any, source: RecordSource, field: str, columns: tuple[str, ...]) -> Series:
    """Read a path or an in-memory value into a :class:`Series`."""
    if isinstance(value, (str, Path)):
        path = source.resolve_file(value, field)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return Series(_load_npy(path, source, field), None)
        if suffix == ".npz":
            return _load_npz(path, source, field)
        if suffix == ".csv":
            return _load_csv(path, source, field, columns)
        raise source.error(field, f"unsupported sensor file type '{suffix}'", path, f"Use one of {', '.join(SUFFIXES)}")
    if isinstance(value, tuple) and len(value) == 2:
        return Series(_as_values(value[0], source, field), _as_rate(value[1], source, field))
    if isinstance(value, dict):
        if "data" not in value:
            raise source.error(field, "a sensor dict needs a 'data' key (and optionally 'sample_rate')", sorted(value))
        rate = value.get("sample_rate")
        return Series(_as_values(value["data"], source, field), None if rate is None else _as_rate(rate, source, field))
    return Series(_as_values(value, source, field), None)


def _as_values(data: Any, source: RecordSource, field: str) -> np.ndarray:
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise source.error(field, f"sensor values are not numeric ({error})", fix="Pass a (time, channels) float array") from error
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise source.error(field, f"sensor array must be (time, channels), got shape {array.shape} dtype {array.dtype}")
    if array.shape[0] == 0:
        raise source.error(field, f"sensor series is empty, shape {array.shape}", fix="Remove the field or supply at least one step")
    if np.isinf(array).any():
        row = int(np.argwhere(np.isinf(array))[0, 0])
        raise source.error(field, f"sensor series has an infinite value at step {row}", fix="Replace it with NaN to mark a gap")
    return array


def _as_rate(rate: Any, source: RecordSource, field: str) -> float:
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise source.error(field, "sample_rate must be a number in Hz", rate) from None
    if not math.isfinite(value) or value <= 0:
        raise source.error(field, "sample_rate must be a positive number of Hz", rate)
    return value


def _load_npy(path: Path, source: RecordSource, field: str) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise source.error(field, f"cannot read NPY file ({error})", path, "Save it with numpy.save from a numeric array") from error
    return _as_values(data, source, field)


def _load_npz(path: Path, source: RecordSource, field: str) -> Series:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = "data" if "data" in keys else next((k for k in keys if k != "sample_rate"), None)
            if key is None:
                raise source.error(field, "NPZ file holds no data array", path, "Store the series under the key 'data'")
            data = archive[key]
            rate = archive["sample_rate"] if "sample_rate" in keys else None
    except (ValueError, OSError, EOFError) as error:
        raise source.error(field, f"cannot read NPZ file ({error})", path) from error
    return Series(_as_values(data, source, field), None if rate is None else _as_rate(rate, source, field))


def _load_csv(path: Path, source: RecordSource, field: str, columns: tuple[str, ...]) -> Series:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise source.error(field, f"cannot read CSV file ({error})", path) from error
    if not rows:
        raise source.error(field, "CSV file has no rows", path)
    header = [cell.strip() for cell in rows[0]]
    has_header = not all(_is_number(cell) for cell in header)
    names = header if has_header else [f"channel_{i}" for i in range(len(header))]
    body = rows[1:] if has_header else rows
    if not body:
        raise source.error(field, "CSV file has a header but no data rows", path)

    matrix = np.full((len(body), len(names)), np.nan)
    for row_number, row in enumerate(body, start=2 if has_header else 1):
        if len(row) != len(names):
            raise source.error(field, f"CSV line {row_number} has {len(row)} cells, the header has {len(names)}", path)
        for column, cell in enumerate(row):
            cell = cell.strip()
            if cell == "" or cell.lower() == "nan":
                continue
            if not _is_number(cell):
                raise source.error(field, f"CSV line {row_number}, column '{names[column]}': not a number", cell)
            matrix[row_number - (2 if has_header else 1), column] = float(cell)

    lowered = [name.lower() for name in names]
    time_index = next((lowered.index(name) for name in TIME_COLUMNS if name in lowered), None)
    if columns:
        missing = [name for name in columns if name not in names]
        if missing:
            raise source.error(field, f"CSV lacks column(s) {', '.join(missing)}; it has {', '.join(names)}", path)
        value_indices = [names.index(name) for name in columns]
    else:
        value_indices = [i for i in range(len(names)) if i != time_index]
    values = _as_values(matrix[:, value_indices], source, field)
    channel_names = tuple(names[i] for i in value_indices)
    if time_index is None:
        return Series(values, None, channel_names=channel_names)

    timestamps = matrix[:, time_index]
    if np.isnan(timestamps).any() or (len(timestamps) > 1 and np.any(np.diff(timestamps) <= 0)):
        raise source.error(
            field, f"CSV column '{names[time_index]}' must hold strictly increasing seconds with no gaps", path,
            "Sort the rows by time and drop duplicate timestamps",
        )
    return Series(values, None, timestamps, channel_names)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
