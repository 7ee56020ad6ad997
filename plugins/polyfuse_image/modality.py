"""The image modality: files in any Pillow mode to (channels, height, width) floats in [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from polyfuse.config import require
from polyfuse.modality import Encoder, Modality, ModalityBatch, ModalityConfig, RecordSource
from polyfuse.persistence import atomic_write

from .networks import ConvBackbone, ConvDecoder
from .reading import array_to_image, image_to_array, open_image

RESIZE_MODES = ("pad", "stretch", "crop")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class ImageConfig(ModalityConfig):
    """Settings of the image modality."""

    size: tuple[int, int] = (32, 32)  # (height, width) in pixels after resizing
    channels: int = 3  # 1 for grayscale, 3 for RGB
    background: tuple[int, int, int] = (255, 255, 255)  # RGB 0-255 that transparent pixels are composited onto
    resize: str = "pad"  # "pad" keeps the aspect ratio and pads with background, "stretch" or "crop" (center)
    likelihood: str = "bernoulli"  # pixel likelihood: "bernoulli" or "gaussian"
    gaussian_std: float = 0.1  # standard deviation of the Gaussian likelihood, in pixel units [0, 1]
    width: int = 16  # channels of the first convolution; later ones double, up to 4x
    augment_shift: float = 0.0  # maximum random translation in training, as a fraction of the size
    augment_rotate: float = 0.0  # maximum random rotation in training, in degrees
    augment_scale: float = 0.0  # maximum random zoom in training, as a fraction (0.1 = 90% to 110%)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.size) == 2 and min(self.size) >= 4, f"size must be (height, width) with both >= 4, got {self.size}")
        require(self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}")
        require(len(self.background) == 3 and all(0 <= v <= 255 for v in self.background), f"background must be 3 values in 0-255, got {self.background}")
        require(self.resize in RESIZE_MODES, f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        require(self.likelihood in LIKELIHOODS, f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        require(self.gaussian_std > 0, f"gaussian_std must be > 0, got {self.gaussian_std}")
        require(self.width > 0, f"width must be > 0, got {self.width}")
        require(0 <= self.augment_shift < 0.5, f"augment_shift must be in [0, 0.5), got {self.augment_shift}")
        require(0 <= self.augment_rotate <= 180, f"augment_rotate must be in [0, 180], got {self.augment_rotate}")
        require(0 <= self.augment_scale < 1, f"augment_scale must be in [0, 1), got {self.augment_scale}")


class ImageModality(Modality):
    """Images from any file Pillow reads, PIL images or arrays; decoded images are saved as PNG."""

    name = "image"
    config_class = ImageConfig
    file_suffix = ".png"
    description = "images (PNG, JPEG and any format Pillow reads) resized to a fixed size"
    # "noise": Gaussian pixel noise with this standard deviation (pixels span [0, 1]);
    # "occlusion": a square of background colour covering this share of the image area.
    corruptions = {"noise": (0.1, 0.25, 0.5), "occlusion": (0.1, 0.25, 0.5)}
    config: ImageConfig

    def load(self, value: Any, source: RecordSource) -> np.ndarray:
        if isinstance(value, np.ndarray) or isinstance(value, torch.Tensor):
            array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            image = array_to_image(array, source, self.field)
        else:
            image = open_image(value, source, self.field)
        if image.width < 1 or image.height < 1:
            raise source.error(self.field, f"image has no pixels ({image.width}x{image.height})")
        image = self._resize(image)
        return image_to_array(image, self.config.channels, self.config.background)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(raw.transpose(2, 0, 1)))  # (H, W, C) -> (C, H, W)

    def augment(self, batch: ModalityBatch, generator: torch.Generator) -> ModalityBatch:
        config = self.config
        if not (config.augment_shift or config.augment_rotate or config.augment_scale) or batch.data.numel() == 0:
            return batch
        count, device = batch.data.shape[0], batch.data.device

        def uniform(limit: float) -> torch.Tensor:
            return (torch.rand(count, generator=generator, device=device) * 2 - 1) * limit

        angle = uniform(math.radians(config.augment_rotate))
        scale = 1.0 + uniform(config.augment_scale)
        shift_x, shift_y = uniform(2 * config.augment_shift), uniform(2 * config.augment_shift)  # grid units span 2
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(batch.data.shape), align_corners=False)
        # Pixels moved in from outside take the background colour.
        background = torch.tensor(config.background, dtype=batch.data.dtype, device=device) / 255.0
        if config.channels == 1:
            background = (background * torch.tensor([0.299, 0.587, 0.114], device=device)).sum(0, keepdim=True)
        shifted = batch.data - background.view(1, -1, 1, 1)
        warped = F.grid_sample(shifted, grid, padding_mode="zeros", align_corners=False) + background.view(1, -1, 1, 1)
        return ModalityBatch(warped.clamp(0, 1), batch.present, batch.lengths)

    def corrupt(self, item: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
        if kind == "noise":
            noise = torch.randn(item.shape, generator=generator, device=item.device)
            return (item + level * noise).clamp(0.0, 1.0)
        if kind == "occlusion":
            channels, height, width = item.shape
            side_height = min(height, max(1, round(height * math.sqrt(level))))
            side_width = min(width, max(1, round(width * math.sqrt(level))))
            top = int(torch.randint(0, height - side_height + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - side_width + 1, (1,), generator=generator))
            background = torch.tensor(self.config.background, dtype=item.dtype, device=item.device) / 255.0
            fill = background.mean(0, keepdim=True) if channels == 1 else background
            occluded = item.clone()
            occluded[:, top : top + side_height, left : left + side_width] = fill.view(-1, 1, 1)
            return occluded
        return super().corrupt(item, kind, level, generator)

    def build_encoder(self, latent_dim: int) -> Encoder:
        config = self.config
        backbone = ConvBackbone(config.channels, tuple(config.size), config.width, config.feature_dim)
        return Encoder(backbone, config.feature_dim, latent_dim)

    def build_decoder(self, latent_dim: int) -> ConvDecoder:
        config = self.config
        return ConvDecoder(latent_dim, config.channels, tuple(config.size), config.width, config.likelihood, config.gaussian_std)

    def postprocess(self, data: torch.Tensor, length: int | None = None) -> Image.Image:
        pixels = (data.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        if pixels.shape[0] == 1:
            return Image.fromarray(pixels[0], mode="L")
        return Image.fromarray(pixels.transpose(1, 2, 0), mode="RGB")  # (C, H, W) -> (H, W, C)

    def save(self, value: Image.Image, path: str | Path) -> Path:
        return atomic_write(Path(path), lambda temporary: value.save(temporary, format="PNG"))

    def _resize(self, image: Image.Image) -> Image.Image:
        height, width = self.config.size
        if (image.height, image.width) == (height, width):
            return image
        if image.mode in {"P", "1"}:
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        resample = Image.Resampling.LANCZOS if image.mode not in {"I", "F", "I;16"} else Image.Resampling.BILINEAR
        if self.config.resize == "stretch":
            return image.resize((width, height), resample)
        scale = (max if self.config.resize == "crop" else min)(width / image.width, height / image.height)
        scaled = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
        if self.config.resize == "crop":
            left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
            return scaled.crop((left, top, left + width, top + height))
        return _pad(scaled, (width, height), self.config.background)


def _pad(image: Image.Image, size: tuple[int, int], background: tuple[int, int, int]) -> Image.Image:
    mode = "RGBA" if image.mode in {"RGBA", "LA", "PA"} else image.mode
    if mode not in {"RGB", "RGBA", "L", "I", "F", "I;16"}:
        image, mode = image.convert("RGB"), "RGB"
    image = image.convert(mode) if image.mode != mode else image
    luma = round(0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2])
    fill: Any = {"RGBA": (*background, 0), "RGB": background, "L": luma}.get(mode, 0)
    canvas = Image.new(mode, size, fill)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return canvas
