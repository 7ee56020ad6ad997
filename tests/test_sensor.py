import numpy as np
import pytest
import torch

from polyfuse.errors import ConfigError, InvalidRecordError
from polyfuse.modality import RecordSource
from polyfuse_sensor import SensorConfig, SensorModality

SOURCE = RecordSource("test.jsonl line 9")


def modality(**options) -> SensorModality:
    settings = {"channels": 2, "sample_rate": 50.0, "length": 32, "width": 8, "depth": 2, "feature_dim": 16}
    settings.update(options)
    return SensorModality(SensorConfig(**settings))


def dominant_frequency(values: np.ndarray, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(values - values.mean()))
    return float(np.fft.rfftfreq(len(values), 1 / rate)[spectrum.argmax()])


def test_nan_gap_inside_series_is_interpolated_and_masked(tmp_path):
    series = np.stack([np.arange(20.0), np.arange(20.0) * 2], 1)
    series[5:9, 0] = np.nan
    np.save(tmp_path / "gap.npy", series)
    tensor = modality(length=20).prepare(tmp_path / "gap.npy", SOURCE)
    assert tensor.shape == (3, 20)
    np.testing.assert_allclose(tensor[0, :20].numpy(), np.arange(20.0), atol=1e-5)
    assert tensor[2, 5:9].tolist() == [0.0] * 4
    assert tensor[2, :5].tolist() == [1.0] * 5


def test_mask_policy_zeroes_gaps():
    series = np.ones((10, 2))
    series[3, 1] = np.nan
    tensor = modality(length=10, gaps="mask").prepare(series, SOURCE)
    assert tensor[1, 3].item() == 0.0
    assert tensor[2, 3].item() == 0.0


def test_resampling_keeps_frequency():
    rate, seconds = 200.0, 4.0
    steps = np.arange(int(rate * seconds)) / rate
    series = np.stack([np.sin(2 * np.pi * 3 * steps), np.cos(2 * np.pi * 3 * steps)], 1)
    tensor = modality(length=400).prepare((series, rate), SOURCE)
    assert tensor.shape == (3, 200)  # 4 s at 50 Hz, shorter than length so not cropped
    assert dominant_frequency(tensor[0].numpy(), 50.0) == pytest.approx(3.0, abs=0.3)


def test_csv_with_irregular_time_column(tmp_path):
    times = np.sort(np.random.default_rng(0).uniform(0, 2, 150))
    times[0] = 0.0
    rows = "\n".join(f"{t:.5f},{np.sin(2 * np.pi * t):.5f},{2.0:.1f}" for t in times)
    (tmp_path / "s.csv").write_text("time,x,y\n" + rows + "\n")
    tensor = modality(length=200, sample_rate=20.0).prepare(tmp_path / "s.csv", SOURCE)
    grid = np.arange(tensor.shape[1]) / 20.0
    assert tensor.shape[1] == int(np.floor(times[-1] * 20)) + 1
    np.testing.assert_allclose(tensor[0].numpy(), np.sin(2 * np.pi * grid), atol=0.05)
    np.testing.assert_allclose(tensor[1].numpy(), 2.0)


def test_csv_errors_name_line_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(InvalidRecordError, match=r"field 'sensor': CSV line 3, column 'y': not a number"):
        modality().prepare(tmp_path / "bad.csv", SOURCE)
    (tmp_path / "time.csv").write_text("time,x,y\n0,1,2\n0,1,2\n")
    with pytest.raises(InvalidRecordError, match="strictly increasing"):
        modality().prepare(tmp_path / "time.csv", SOURCE)


@pytest.mark.parametrize(
    "value, message",
    [
        (np.zeros((10, 3)), r"expected 2 channels, got an array of shape \(10, 3\)"),
        (np.full((5, 2), np.nan), "only NaN"),
        (np.array([[1.0, np.inf]]), "infinite value at step 0"),
        (np.zeros((0, 2)), "empty"),
        ({"values": [1, 2]}, "needs a 'data' key"),
        ((np.zeros((4, 2)), -5), "positive number of Hz"),
    ],
)
def test_invalid_values_are_rejected(value, message):
    with pytest.raises(InvalidRecordError, match=message) as raised:
        modality().prepare(value, SOURCE)
    assert str(raised.value).startswith("test.jsonl line 9, field 'sensor'")


def test_pad_mode_crops_and_records_lengths():
    sensor = modality(length=16)
    long, short = sensor.prepare(np.ones((40, 2))), sensor.prepare(np.ones((5, 2)))
    batch = sensor.collate([long, None, short])
    assert batch.data.shape == (3, 3, 16)
    assert batch.lengths.tolist() == [16, 0, 5]
    assert batch.present.tolist() == [True, False, True]


def test_resample_mode_stretches_to_length():
    tensor = modality(length=32, length_mode="resample").prepare(np.linspace(0, 1, 9)[:, None].repeat(2, 1))
    assert tensor.shape == (3, 32)
    np.testing.assert_allclose(tensor[0].numpy(), np.linspace(0, 1, 32), atol=1e-6)


def test_series_normalisation_keeps_channel_ratio():
    series = np.stack([np.arange(10.0) * 4, np.arange(10.0)], 1)
    tensor = modality(length=10, normalize="series").prepare(series)
    assert tensor[0].std().item() == pytest.approx(4 * tensor[1].std().item(), rel=1e-5)
    assert tensor[0].mean().item() == pytest.approx(0.0, abs=1e-6)


def test_networks_and_likelihood_masking():
    sensor = modality(length=32)
    encoder, decoder = sensor.build_encoder(4), sensor.build_decoder(4)
    batch = sensor.collate([sensor.prepare(np.random.randn(20, 2)), sensor.prepare(np.random.randn(32, 2))])
    posterior = encoder(batch)
    assert posterior.mean.shape == (2, 4)
    latents = posterior.sample()
    base = decoder.log_likelihood(latents, batch)
    # Values beyond a series' length must not change its likelihood.
    changed = batch.data.clone()
    changed[0, :2, 25:] = 1e3
    from polyfuse.modality import ModalityBatch

    same = decoder.log_likelihood(latents, ModalityBatch(changed, batch.present, batch.lengths))
    assert torch.allclose(base, same)
    generated = decoder.generate(torch.randn(3, 4))
    assert generated.data.shape == (3, 3, 32)


def test_augment_is_seeded_and_keeps_padding_zero():
    sensor = modality(length=16, augment_scale=0.2, augment_rotate=30, augment_time_warp=0.3, augment_noise=0.1)
    batch = sensor.collate([sensor.prepare(np.random.randn(10, 2)), None])
    first = sensor.augment(batch, torch.Generator().manual_seed(1))
    second = sensor.augment(batch, torch.Generator().manual_seed(1))
    assert torch.equal(first.data, second.data)
    assert first.data[0, :, 10:].abs().sum() == 0
    assert first.data[1].abs().sum() == 0


def test_augment_channel_dropout_zeroes_one_channel():
    sensor = modality(length=16, channels=3, augment_channel_dropout=1.0)
    values = np.random.default_rng(0).normal(size=(16, 3)) + 5.0  # no channel is zero by chance
    batch = sensor.collate([sensor.prepare(values) for _ in range(50)])
    augmented = sensor.augment(batch, torch.Generator().manual_seed(0))
    silent = (augmented.data[:, :3].abs().sum(dim=-1) == 0)  # (B, C)
    assert (silent.sum(dim=1) == 1).all()
    assert set(silent.float().argmax(dim=1).tolist()) == {0, 1, 2}
    assert torch.equal(augmented.data[:, 3:], batch.data[:, 3:])  # the observed-mask rows are kept


def test_save_npy_and_csv(tmp_path):
    sensor = modality(channel_names=("ax", "ay"))
    value = sensor.postprocess(torch.randn(3, 32), length=10)
    np.testing.assert_allclose(np.load(sensor.save(value, tmp_path / "s.npy")), value.values, atol=1e-6)
    lines = sensor.save(value, tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "time,ax,ay"
    assert len(lines) == 11
    assert lines[2].startswith("0.02,")


def test_config_validation_names_field():
    with pytest.raises(ConfigError, match="length_mode must be one of resample, pad"):
        SensorConfig(length_mode="stretch")
    with pytest.raises(ConfigError, match="columns must list 6 names"):
        SensorConfig(columns=("a",))


def test_corruptions_noise_and_dropout():
    sensor = modality(length=64)
    item = sensor.prepare(np.random.default_rng(0).normal(size=(64, 2)))
    generator = torch.Generator().manual_seed(0)
    dropped = sensor.corrupt(item, "dropout", 0.5, generator)
    assert 0.35 < dropped[2].mean().item() < 0.65
    assert torch.all(dropped[:2][:, dropped[2] == 0] == 0)
    noisy = sensor.corrupt(item, "noise", 1.0, generator)
    assert torch.equal(noisy[2], item[2])
    assert (noisy[:2] - item[:2]).std().item() > 0.5
