"""Turning any image Pillow reads, or an in-memory array, into float pixels in [0, 1].

Pillow modes differ in bit depth and transparency; this module maps each to RGB or
grayscale with 8-bit or 16-bit precision kept as floats, composited onto a background.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from polyfuse.modality import RecordSource

# Full-scale value of integer modes that Pillow reports for 16- and 32-bit grayscale.
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def open_image(value: Any, source: RecordSource, field: str) -> Image.Image:
    """Open a path or accept a PIL image, forcing a full decode so truncated files fail here."""
    if isinstance(value, Image.Image):
        return value
    if not isinstance(value, (str, Path)):
        raise source.error(field, f"expected an image path, PIL image or array, got {type(value).__name__}")
    path = source.resolve_file(value, field)
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError as error:
        raise source.error(field, "not an image file Pillow can read", path, "Convert it to PNG or JPEG") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise source.error(field, f"image file is damaged or cut short ({error})", path, "Replace the file") from error
    return image


def image_to_array(image: Image.Image, channels: int, background: tuple[int, int, int]) -> np.ndarray:
    """Return float32 pixels (H, W, channels) in [0, 1]; transparency is composited onto ``background``."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in {"I", "F"}:
        gray = _high_depth_to_unit(image)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        alpha = None
    else:
        has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode in {"P", "L", "RGB"} and "transparency" in image.info)
        converted = image.convert("RGBA" if has_alpha else "RGB")
        pixels = np.asarray(converted, dtype=np.float32) / 255.0
        rgb = pixels[..., :3]
        alpha = pixels[..., 3:] if has_alpha else None
    if alpha is not None:
        rgb = rgb * alpha + np.asarray(background, dtype=np.float32) / 255.0 * (1.0 - alpha)
    if channels == 1:
        # ITU-R 601 luma weights, the same that Pillow's convert("L") uses.
        return (rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return rgb


def array_to_image(pixels: np.ndarray, source: RecordSource, field: str) -> Image.Image:
    """Accept (H, W), (H, W, C) uint8 or float arrays in [0, 1] and return a PIL image."""
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = np.moveaxis(array, 0, 2)  # (C, H, W) -> (H, W, C)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise source.error(
            field, f"image array must be (H, W) or (H, W, 1|3|4), got shape {array.shape} dtype {array.dtype}"
        )
    if array.size == 0:
        raise source.error(field, f"image array is empty, shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise source.error(field, "image array contains NaN or infinite values", fix="Clean the array")
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise source.error(field, f"integer image arrays must be uint8, got {array.dtype}", fix="Scale to 0-255 and cast")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def _high_depth_to_unit(image: Image.Image) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(values.min()), float(values.max())
        return ((values - low) / (high - low) if high > low else np.zeros_like(values)).astype(np.float32)
    # 16-bit PNGs decode to "I;16" or to "I"; both use the 0-65535 range, and an "I" image
    # whose values fit in 0-255 is treated as 8-bit.
    full_scale = 65535.0 if image.mode in _SIXTEEN_BIT_MODES or values.max() > 255 else 255.0
    return np.clip(values / full_scale, 0.0, 1.0).astype(np.float32)
