"""Built-in image modality for polyfuse: any image Pillow reads, to a fixed size and channel count."""

from .modality import ImageConfig, ImageModality

__all__ = ["ImageConfig", "ImageModality"]
