import io

import numpy as np
import pytest
import torch
from PIL import Image

from polyfuse.errors import ConfigError, InvalidRecordError
from polyfuse.modality import RecordSource
from polyfuse_image import ImageConfig, ImageModality

SOURCE = RecordSource("test.jsonl line 4")


def modality(**options) -> ImageModality:
    settings = {"size": (8, 8), "channels": 1, "background": (0, 0, 0), "width": 4, "feature_dim": 16}
    settings.update(options)
    return ImageModality(ImageConfig(**settings))


def test_grayscale_png_keeps_pixels(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(pixels, mode="L").save(tmp_path / "g.png")
    tensor = modality().prepare(tmp_path / "g.png", SOURCE)
    assert tensor.shape == (1, 8, 8)
    np.testing.assert_allclose(tensor[0].numpy(), pixels / 255.0, atol=1e-6)


def test_palette_png_with_transparent_colour_uses_background(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    image.save(tmp_path / "p.png", transparency=0)
    tensor = modality(channels=3, background=(0, 255, 0)).prepare(tmp_path / "p.png", SOURCE)
    assert tensor[:, 0, 0].tolist() == [0.0, 0.0, 1.0]  # opaque blue
    assert tensor[:, 0, 7].tolist() == [0.0, 1.0, 0.0]  # transparent red shows the green background


def test_rgba_alpha_is_composited(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    tensor = modality(channels=3, background=(255, 255, 255)).prepare(tmp_path / "a.png", SOURCE)
    assert tensor[0].mean().item() == pytest.approx(1.0, abs=1e-3)
    assert tensor[1].mean().item() == pytest.approx(1 - 128 / 255, abs=1e-3)


def test_sixteen_bit_png_scales_full_range(tmp_path):
    values = np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "deep.png")
    tensor = modality().prepare(tmp_path / "deep.png", SOURCE)
    assert tensor.min().item() == pytest.approx(0.0, abs=1e-6)
    assert tensor.max().item() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(tensor[0].numpy(), values / 65535.0, atol=1e-5)


def test_resize_modes_give_configured_size(tmp_path):
    Image.new("RGB", (40, 10), (255, 255, 255)).save(tmp_path / "wide.png")
    for mode in ("pad", "stretch", "crop"):
        tensor = modality(size=(8, 8), resize=mode).prepare(tmp_path / "wide.png", SOURCE)
        assert tensor.shape == (1, 8, 8)
    padded = modality(size=(8, 8), resize="pad").prepare(tmp_path / "wide.png", SOURCE)
    assert padded[0, 0].max().item() == 0.0  # padding rows take the black background
    assert padded[0, 4].min().item() > 0.9


def test_truncated_jpeg_names_record_and_path(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InvalidRecordError) as raised:
        modality().prepare(tmp_path / "cut.jpg", SOURCE)
    message = str(raised.value)
    assert message.startswith("test.jsonl line 4, field 'image': image file is damaged or cut short")
    assert str(tmp_path / "cut.jpg") in message


def test_zero_byte_and_non_image_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidRecordError, match="file is empty"):
        modality().prepare(tmp_path / "empty.png", SOURCE)
    with pytest.raises(InvalidRecordError, match="not an image file Pillow can read"):
        modality().prepare(tmp_path / "text.png", SOURCE)


def test_in_memory_arrays_and_pil_images():
    from_uint8 = modality().prepare(np.full((8, 8), 255, dtype=np.uint8))
    from_float = modality().prepare(np.ones((8, 8, 3), dtype=np.float32))
    from_pil = modality().prepare(Image.new("L", (8, 8), 255))
    for tensor in (from_uint8, from_float, from_pil):
        assert torch.allclose(tensor, torch.ones(1, 8, 8))
    with pytest.raises(InvalidRecordError, match=r"shape \(2, 3, 4, 5\)"):
        modality().prepare(np.zeros((2, 3, 4, 5)))
    with pytest.raises(InvalidRecordError, match="NaN"):
        modality().prepare(np.full((8, 8), np.nan, dtype=np.float32))


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (16, 24), (64, 64)])
def test_networks_fit_any_size(size):
    image = modality(size=size, channels=3)
    encoder, decoder = image.build_encoder(5), image.build_decoder(5)
    batch = image.collate([torch.rand(3, *size), None, torch.rand(3, *size)])
    posterior = encoder(batch.select(torch.tensor([0, 2])))
    assert posterior.mean.shape == (2, 5)
    log_likelihood = decoder.log_likelihood(posterior.sample(), batch.select(torch.tensor([0, 2])))
    assert log_likelihood.shape == (2,) and torch.isfinite(log_likelihood).all()
    generated = decoder.generate(torch.randn(4, 5))
    assert generated.data.shape == (4, 3, *size)
    assert generated.data.min() >= 0 and generated.data.max() <= 1


def test_augment_is_seeded_and_keeps_absent_rows():
    image = modality(augment_shift=0.2, augment_rotate=20, augment_scale=0.2)
    batch = image.collate([torch.rand(1, 8, 8), None])
    first = image.augment(batch, torch.Generator().manual_seed(0))
    second = image.augment(batch, torch.Generator().manual_seed(0))
    assert torch.equal(first.data, second.data)
    assert not torch.equal(first.data[0], batch.data[0])
    assert first.data[1].abs().sum() == 0


def test_save_writes_png(tmp_path):
    image = modality(channels=3)
    value = image.postprocess(torch.rand(3, 8, 8))
    path = image.save(value, tmp_path / "out.png")
    with Image.open(path) as reread:
        assert reread.size == (8, 8) and reread.mode == "RGB"


def test_config_errors_name_field():
    with pytest.raises(ConfigError, match="channels must be 1 or 3, got 2"):
        ImageConfig(channels=2)
    with pytest.raises(ConfigError, match="resize must be one of pad, stretch, crop"):
        ImageConfig(resize="fill")


def test_corruptions_change_pixels_by_level():
    image = modality(channels=1, background=(0, 0, 0))
    item = torch.full((1, 8, 8), 0.5)
    generator = torch.Generator().manual_seed(0)
    noisy = image.corrupt(item, "noise", 0.25, generator)
    assert 0.15 < (noisy - item).std().item() < 0.3
    occluded = image.corrupt(item, "occlusion", 0.25, generator)
    assert (occluded == 0).float().mean().item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="available: noise, occlusion"):
        image.corrupt(item, "blur", 1.0, generator)
