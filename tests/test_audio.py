"""Tests of the built-in audio modality: reading, log-mel features, networks, Griffin-Lim and saving."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from polyfuse.errors import ConfigError, InvalidRecordError
from polyfuse.modality import ModalityBatch, RecordSource
from polyfuse_audio import plugin
from polyfuse_audio.features import LogMelSpectrogram, count_frames, griffin_lim
from polyfuse_audio.modality import AudioClip, AudioConfig, AudioModality

FSDD_PATH = Path("/work/shared/data/fsdd/fsdd.npz")
RATE = 8000
LATENT_DIM = 8


def small_config(**changes) -> AudioConfig:
    settings = dict(
        sample_rate=RATE, duration=1.0, n_fft=256, hop_length=128, n_mels=32, width=8, feature_dim=32, griffin_lim_iterations=8
    )
    settings.update(changes)
    return AudioConfig(**settings)


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    time = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[spectrum.argmax()])


def write(path: Path, samples: np.ndarray, rate: int, **options) -> Path:
    soundfile.write(path, samples, rate, **options)
    return path


def front_end_for(config: AudioConfig) -> LogMelSpectrogram:
    return LogMelSpectrogram(
        config.sample_rate, config.n_fft, config.hop_length, config.n_mels, config.f_min, config.max_frequency, config.top_db
    )


def source_in(folder: Path) -> RecordSource:
    return RecordSource("records.jsonl line 3", folder)


# -- reading files -------------------------------------------------------------


def test_stereo_48k_wav_resampled(tmp_path):
    left, right = sine(440, 48000, 1.5), sine(440, 48000, 1.5, amplitude=0.25)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 48000)
    modality = AudioModality(small_config())

    clip = modality.prepare(path)

    assert clip.shape == (1, RATE)
    assert clip.dtype == torch.float32
    assert abs(dominant_frequency(clip[0].numpy(), RATE) - 440) < 2
    # Oracle: the downmix of the two channels, peak-normalised, sampled at 8 kHz.
    expected = sine(440, RATE, 1.0, amplitude=1.0)
    middle = slice(200, RATE - 200)
    assert np.abs(clip[0, middle].numpy() - expected[middle]).max() < 1e-2


def test_long_file_keeps_start_exactly(tmp_path):
    # Only the start of a file is read; the kept samples must match resampling the whole file.
    from scipy.signal import resample_poly

    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 44100 * 3).astype(np.float32)
    path = write(tmp_path / "long.wav", samples, 44100, subtype="FLOAT")
    modality = AudioModality(small_config(normalize_peak=False))

    clip = modality.prepare(path)[0].numpy()

    reference = resample_poly(samples, 80, 441)[:RATE]
    np.testing.assert_allclose(clip, reference, atol=1e-5)


def test_24_bit_wav(tmp_path):
    samples = np.random.default_rng(1).uniform(-0.9, 0.9, RATE // 2).astype(np.float32)
    path = write(tmp_path / "deep.wav", samples, RATE, subtype="PCM_24")
    assert soundfile.info(path).subtype == "PCM_24"
    modality = AudioModality(small_config(normalize_peak=False))

    clip = modality.prepare(path)[0].numpy()

    np.testing.assert_allclose(clip[: RATE // 2], samples, atol=2.0**-22)
    assert not clip[RATE // 2 :].any()


@pytest.mark.parametrize(("suffix", "options"), [(".flac", {}), (".ogg", {"format": "OGG", "subtype": "VORBIS"})])
def test_flac_and_ogg_files(tmp_path, suffix, options):
    path = write(tmp_path / f"tone{suffix}", sine(1000, 16000, 1.0), 16000, **options)
    modality = AudioModality(small_config())

    clip = modality.prepare(path)

    assert clip.shape == (1, RATE)
    assert abs(dominant_frequency(clip[0].numpy(), RATE) - 1000) < 2
    assert math.isclose(float(clip.abs().max()), 1.0, rel_tol=1e-6)


def test_zero_byte_wav_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    modality = AudioModality(small_config(), field="speech")

    with pytest.raises(InvalidRecordError) as raised:
        modality.load("empty.wav", source_in(tmp_path))

    message = str(raised.value)
    assert "records.jsonl line 3" in message
    assert "field 'speech'" in message
    assert str(path) in message
    assert "0 bytes" in message


@pytest.mark.parametrize(("name", "reason"), [("noise.wav", "libsndfile"), ("noise.raw", "no header")])
def test_corrupt_file_rejected(tmp_path, name, reason):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    modality = AudioModality(small_config(), field="speech")

    with pytest.raises(InvalidRecordError) as raised:
        modality.load(path, source_in(tmp_path))

    message = str(raised.value)
    assert "field 'speech'" in message
    assert str(path) in message
    assert reason in message
    assert "onvert it to WAV" in message


def test_truncated_flac_rejected(tmp_path):
    path = write(tmp_path / "tone.flac", sine(440, RATE, 1.0), RATE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(InvalidRecordError, match="libsndfile failed to read the audio file"):
        AudioModality(small_config()).load(path, source_in(tmp_path))


def test_header_only_wav_rejected(tmp_path):
    path = write(tmp_path / "tone.wav", sine(440, RATE, 1.0), RATE, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:44])

    with pytest.raises(InvalidRecordError, match="audio file has no frames"):
        AudioModality(small_config()).load(path, source_in(tmp_path))


def test_missing_file_rejected(tmp_path):
    modality = AudioModality(small_config())

    with pytest.raises(InvalidRecordError, match="file not found"):
        modality.load("absent.wav", source_in(tmp_path))


def test_nan_in_float_wav_rejected(tmp_path):
    samples = sine(440, RATE, 0.5)
    samples[10] = np.nan
    path = write(tmp_path / "nan.wav", samples, RATE, subtype="FLOAT")

    with pytest.raises(InvalidRecordError) as raised:
        AudioModality(small_config()).load(path, source_in(tmp_path))

    assert "audio file contains 1 NaN or infinite samples" in str(raised.value)
    assert str(path) in str(raised.value)


# -- in-memory values ------------------------------------------------------------


def test_tuple_dict_and_array_inputs():
    modality = AudioModality(small_config())
    at_16k = sine(500, 16000, 1.0)
    at_8k = sine(500, RATE, 1.0)

    from_tuple = modality.prepare((at_16k, 16000))
    from_dict = modality.prepare({"array": at_16k, "sampling_rate": 16000, "path": None})
    from_array = modality.prepare(at_8k)
    from_tensor = modality.prepare(torch.from_numpy(np.stack([at_8k, at_8k])))  # (channels, samples)
    from_pcm = modality.prepare((np.round(at_8k * 32767).astype(np.int16), np.int64(RATE)))

    for clip in (from_tuple, from_dict, from_array, from_tensor, from_pcm):
        assert clip.shape == (1, RATE)
        assert abs(dominant_frequency(clip[0].numpy(), RATE) - 500) < 2
    np.testing.assert_allclose(from_tensor.numpy(), from_array.numpy(), atol=1e-6)
    np.testing.assert_allclose(from_pcm.numpy(), from_array.numpy(), atol=1e-4)


def test_soundfile_layout_array_downmixed():
    modality = AudioModality(small_config(normalize_peak=False))
    left, right = sine(300, RATE, 1.0, 0.2), sine(300, RATE, 1.0, 0.6)

    clip = modality.prepare(np.stack([left, right], axis=1))  # (samples, channels)

    np.testing.assert_allclose(clip[0].numpy(), (left + right) / 2, atol=1e-6)


def test_short_input_padded_with_silence():
    modality = AudioModality(small_config())

    clip = modality.prepare(np.full(100, 0.25, dtype=np.float32))

    assert clip.shape == (1, RATE)
    assert torch.all(clip[0, :100] == 1.0)
    assert not clip[0, 100:].any()


def test_silent_input_stays_silent():
    clip = AudioModality(small_config()).prepare(np.zeros(RATE, dtype=np.float32))

    assert not clip.any()


def test_nan_in_array_rejected():
    samples = sine(440, RATE, 1.0)
    samples[[3, 7]] = [np.nan, np.inf]
    modality = AudioModality(small_config(), field="voice")

    with pytest.raises(InvalidRecordError) as raised:
        modality.load(samples, RecordSource("batch row 4"))

    message = str(raised.value)
    assert "batch row 4, field 'voice'" in message
    assert "2 NaN or infinite samples" in message
    assert "Replace or drop those samples" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.zeros((2, 3, 4), dtype=np.float32), "must be 1-D (samples,) or 2-D"),
        (np.zeros(0, dtype=np.float32), "has no samples"),
        (np.zeros(10, dtype=np.complex64), "dtype must be float or integer PCM"),
        ((np.zeros(10), 22050.5), "sample rate must be a positive whole number"),
        ((np.zeros(10), -8000), "sample rate must be a positive whole number"),
        ((np.zeros(10), 8000, "extra"), "must be (waveform, sample_rate), got 3 items"),
        ({"audio": np.zeros(10)}, "missing 'array', 'sampling_rate'"),
        ([0.0, 0.1], "unsupported audio value of type list"),
    ],
)
def test_invalid_in_memory_values(value, expected):
    modality = AudioModality(small_config())

    with pytest.raises(InvalidRecordError) as raised:
        modality.load(value, RecordSource())

    assert expected in str(raised.value)
    assert "field 'audio'" in str(raised.value)


# -- features ----------------------------------------------------------------------


def test_log_mel_range_and_shape():
    config = small_config()
    front_end = front_end_for(config)
    waveform = torch.from_numpy(sine(440, RATE, 1.0)).view(1, 1, -1)  # (B, 1, num_samples)

    log_mel = front_end(waveform)

    assert log_mel.shape == (1, 1, config.n_mels, count_frames(RATE, config.n_fft, config.hop_length))
    assert float(log_mel.max()) == pytest.approx(1.0)
    assert float(log_mel.min()) == pytest.approx(-1.0)


def test_log_mel_matches_numpy_reference():
    # Oracle: the same mel power computed with numpy's FFT on explicitly framed samples.
    from transformers.audio_utils import mel_filter_bank

    config = small_config(n_mels=16)
    samples = np.random.default_rng(3).normal(0, 0.3, 1000).astype(np.float32)
    front_end = front_end_for(config)

    mel_power = front_end.mel_power(torch.from_numpy(samples).view(1, 1, -1))[0].numpy()  # (n_mels, frames)

    padded = np.pad(samples.astype(np.float64), config.n_fft // 2)
    window = np.hanning(config.n_fft + 1)[:-1]  # periodic Hann, as torch.hann_window
    frames = count_frames(len(samples), config.n_fft, config.hop_length)
    starts = np.arange(frames) * config.hop_length
    framed = np.stack([padded[start : start + config.n_fft] * window for start in starts])  # (frames, n_fft)
    power = np.abs(np.fft.rfft(framed, axis=1)) ** 2  # (frames, n_fft // 2 + 1)
    filters = mel_filter_bank(
        num_frequency_bins=config.n_fft // 2 + 1,
        num_mel_filters=16,
        min_frequency=0.0,
        max_frequency=RATE / 2,
        sampling_rate=RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    expected = (power @ filters).T  # (n_mels, frames)
    np.testing.assert_allclose(mel_power, expected, rtol=1e-3, atol=1e-6)

    decibels = 10 * np.log10(np.maximum(expected, 1e-10))
    decibels = np.maximum(decibels, decibels.max() - config.top_db)
    normalised = (decibels - decibels.max()) / config.top_db * 2 + 1
    log_mel = front_end(torch.from_numpy(samples).view(1, 1, -1))[0, 0].numpy()  # (n_mels, frames)
    np.testing.assert_allclose(log_mel, normalised, atol=1e-4)


def test_clip_shorter_than_window_gives_finite_values():
    config = small_config(duration=100 / RATE)
    assert config.num_samples == 100 < config.n_fft
    modality = AudioModality(config)
    batch = modality.collate([modality.prepare(sine(440, RATE, 100 / RATE)), modality.prepare(np.zeros(30, dtype=np.float32))])
    torch.manual_seed(0)
    encoder, decoder = modality.build_encoder(LATENT_DIM), modality.build_decoder(LATENT_DIM)

    log_mel = decoder.front_end(batch.data)
    log_likelihood = decoder.log_likelihood(encoder(batch).mean, batch)
    generated = decoder.generate(torch.zeros(2, LATENT_DIM), generator=torch.Generator().manual_seed(0))

    assert log_mel.shape == (2, 1, config.n_mels, 1)
    assert torch.isfinite(log_mel).all()
    assert log_likelihood.shape == (2,)
    assert torch.isfinite(log_likelihood).all()
    assert generated.data.shape == (2, 1, 100)
    assert torch.isfinite(generated.data).all()


def test_silent_clip_gives_finite_log_mel():
    front_end = front_end_for(small_config())

    log_mel = front_end(torch.zeros(2, 1, RATE))

    assert torch.isfinite(log_mel).all()


# -- networks --------------------------------------------------------------------


def test_collate_encoder_decoder_shapes():
    config = small_config()
    modality = AudioModality(config)
    items = [modality.prepare(sine(200 * (row + 1), RATE, 0.8)) for row in range(3)]
    batch = modality.collate([items[0], None, items[1], items[2]])
    torch.manual_seed(0)
    encoder, decoder = modality.build_encoder(LATENT_DIM), modality.build_decoder(LATENT_DIM)

    present = batch.select(batch.present.nonzero(as_tuple=True)[0])
    posterior = encoder(present)
    log_likelihood = decoder.log_likelihood(posterior.mean, present)
    log_likelihood.sum().backward()

    assert batch.data.shape == (4, 1, RATE)
    assert batch.present.tolist() == [True, False, True, True]
    assert batch.lengths is None
    assert not batch.data[1].any()
    assert posterior.mean.shape == (3, LATENT_DIM)
    assert posterior.logvar.shape == (3, LATENT_DIM)
    assert decoder(posterior.mean).shape == (3, 1, config.n_mels, config.num_frames)
    assert log_likelihood.shape == (3,)
    assert torch.isfinite(log_likelihood).all()
    assert all(parameter.grad is not None for parameter in encoder.parameters())


def test_encoder_accepts_single_row_and_long_clips():
    config = small_config(duration=3.0)
    modality = AudioModality(config)
    encoder = modality.build_encoder(LATENT_DIM)

    posterior = encoder(modality.collate([modality.prepare(sine(440, RATE, 3.0))]))

    assert posterior.mean.shape == (1, LATENT_DIM)


def test_front_end_buffers_not_saved():
    modality = AudioModality(small_config())

    state = {**modality.build_encoder(LATENT_DIM).state_dict(), **modality.build_decoder(LATENT_DIM).state_dict()}

    assert not [name for name in state if "front_end" in name]


def test_generate_shape_peak_and_seed():
    config = small_config()
    modality = AudioModality(config)
    torch.manual_seed(0)
    decoder = modality.build_decoder(LATENT_DIM)
    latents = torch.randn(3, LATENT_DIM)

    first = decoder.generate(latents, generator=torch.Generator().manual_seed(5))
    again = decoder.generate(latents, generator=torch.Generator().manual_seed(5))
    sampled = decoder.generate(latents, temperature=1.0, generator=torch.Generator().manual_seed(5))

    assert first.data.shape == (3, 1, RATE)
    assert first.present.all()
    assert torch.isfinite(first.data).all()
    np.testing.assert_allclose(first.data.abs().amax(dim=(1, 2)).numpy(), 0.9, rtol=1e-5)
    assert torch.equal(first.data, again.data)
    assert sampled.data.shape == (3, 1, RATE)
    assert not torch.equal(first.data, sampled.data)


def test_griffin_lim_recovers_sine_frequency():
    # Oracle: the log-mel of a real tone, inverted, must keep the tone's frequency.
    config = small_config(n_mels=64)
    front_end = front_end_for(config)
    tone = torch.from_numpy(sine(1000, RATE, 1.0)).view(1, 1, -1)  # (B, 1, num_samples)

    waveform = front_end.invert(front_end(tone), RATE, iterations=60, generator=torch.Generator().manual_seed(0))

    assert waveform.shape == (1, RATE)
    assert abs(dominant_frequency(waveform[0].numpy(), RATE) - 1000) < 20


def test_griffin_lim_iterations_reduce_spectral_error():
    samples = torch.from_numpy(np.random.default_rng(4).normal(0, 0.3, 4000).astype(np.float32)).view(1, -1)
    window = torch.hann_window(256)
    magnitude = torch.stft(samples, 256, 64, window=window, center=True, pad_mode="constant", return_complex=True).abs()

    def spectral_error(iterations: int) -> float:
        waveform = griffin_lim(
            magnitude, n_fft=256, hop_length=64, window=window, length=4000, iterations=iterations, generator=torch.Generator().manual_seed(0)
        )
        rebuilt = torch.stft(waveform, 256, 64, window=window, center=True, pad_mode="constant", return_complex=True).abs()
        return float(torch.linalg.norm(rebuilt - magnitude) / torch.linalg.norm(magnitude))

    assert spectral_error(60) < 0.5 * spectral_error(0)


# -- augmentation ---------------------------------------------------------------


def augment_batch(modality: AudioModality) -> ModalityBatch:
    items = [modality.prepare(sine(300 + 100 * row, RATE, 1.0)) for row in range(4)]
    return modality.collate([items[0], None, items[1], items[2], None, items[3]])


def test_augment_shape_absent_rows_and_seed():
    modality = AudioModality(
        small_config(augment_gain_db=6.0, augment_shift=0.2, augment_noise_probability=1.0, augment_snr_db=(5.0, 20.0))
    )
    batch = augment_batch(modality)

    first = modality.augment(batch, torch.Generator().manual_seed(7))
    again = modality.augment(batch, torch.Generator().manual_seed(7))
    other = modality.augment(batch, torch.Generator().manual_seed(8))

    assert first.data.shape == batch.data.shape
    assert torch.equal(first.present, batch.present)
    assert not first.data[[1, 4]].any()
    assert torch.equal(first.data, again.data)
    assert not torch.equal(first.data, other.data)
    assert not torch.equal(first.data, batch.data)


def test_augment_off_by_default():
    modality = AudioModality(small_config())
    batch = augment_batch(modality)

    assert modality.augment(batch, torch.Generator().manual_seed(0)) is batch


def test_augment_shift_pads_with_zeros():
    modality = AudioModality(small_config(augment_shift=0.25))
    impulse = torch.zeros(1, RATE)
    impulse[0, RATE // 2] = 1.0
    batch = modality.collate([impulse] * 8)

    shifted = modality.augment(batch, torch.Generator().manual_seed(1)).data

    positions = shifted[:, 0].argmax(dim=1)
    assert torch.all((positions - RATE // 2).abs() <= RATE // 4)
    assert torch.all(shifted.abs().sum(dim=(1, 2)) == 1.0)
    assert len(set(positions.tolist())) > 1


def test_augment_noise_reaches_requested_snr():
    modality = AudioModality(small_config(augment_noise_probability=1.0, augment_snr_db=(10.0, 10.0)))
    batch = augment_batch(modality)

    noisy = modality.augment(batch, torch.Generator().manual_seed(2)).data

    rows = batch.present.nonzero(as_tuple=True)[0]
    signal = batch.data[rows].square().mean(dim=(1, 2))
    noise = (noisy[rows] - batch.data[rows]).square().mean(dim=(1, 2))
    snr_db = 10 * torch.log10(signal / noise)
    assert torch.all((snr_db - 10).abs() < 0.5)


# -- writing ---------------------------------------------------------------------


def test_postprocess_and_save_round_trip(tmp_path):
    modality = AudioModality(small_config())
    tone = modality.prepare(sine(440, RATE, 1.0)) * 0.5

    clip = modality.postprocess(tone)
    path = modality.save(clip, tmp_path / "out" / f"tone{modality.file_suffix}")

    assert isinstance(clip, AudioClip)
    assert clip.waveform.shape == (RATE,)
    assert clip.waveform.dtype == np.float32
    info = soundfile.info(path)
    assert info.samplerate == RATE
    assert info.subtype == "PCM_16"
    assert info.frames == RATE
    samples, rate = soundfile.read(path, dtype="float32")
    np.testing.assert_allclose(samples, clip.waveform, atol=1 / 32768)
    assert [item.name for item in path.parent.iterdir()] == [path.name]


def test_postprocess_cuts_to_length():
    modality = AudioModality(small_config())

    clip = modality.postprocess(torch.ones(1, RATE), length=1234)

    assert clip.waveform.shape == (1234,)


def test_save_rejects_raw_arrays(tmp_path):
    with pytest.raises(TypeError, match="Call postprocess first"):
        AudioModality(small_config()).save(np.zeros(10), tmp_path / "x.wav")


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 8000.0}, "sample_rate"),
        ({"duration": 0.0}, "duration"),
        ({"duration": 1e-6}, "duration"),
        ({"n_fft": 1}, "n_fft"),
        ({"hop_length": 200}, "hop_length"),
        ({"n_mels": 200}, "n_mels"),
        ({"f_max": 5000.0}, "f_max"),
        ({"f_min": 4000.0}, "f_min"),
        ({"top_db": 0.0}, "top_db"),
        ({"gaussian_std": -1.0}, "gaussian_std"),
        ({"width": 0}, "width"),
        ({"griffin_lim_iterations": -1}, "griffin_lim_iterations"),
        ({"augment_gain_db": -3.0}, "augment_gain_db"),
        ({"augment_shift": 1.0}, "augment_shift"),
        ({"augment_noise_probability": 1.5}, "augment_noise_probability"),
        ({"augment_snr_db": (30.0, 10.0)}, "augment_snr_db"),
        ({"normalize_peak": "yes"}, "normalize_peak"),
    ],
)
def test_config_validation_names_field(changes, field):
    with pytest.raises(ConfigError) as raised:
        small_config(**changes)

    assert str(raised.value).startswith(field)


def test_config_json_round_trip():
    modality = AudioModality(small_config(augment_snr_db=(3.0, 12.0), f_max=3000.0))

    restored = AudioModality.from_config_dict(modality.config_dict())

    assert restored.config == modality.config
    assert restored.config.augment_snr_db == (3.0, 12.0)


def test_plugin_registers_audio_modality():
    registered = []

    plugin.register_modalities(registered.append)

    assert registered == [AudioModality]
    assert AudioModality.name == "audio"
    assert AudioModality.file_suffix == ".wav"


def test_entry_point_resolves_audio():
    from polyfuse.plugins import get_modality_class

    assert get_modality_class("audio") is AudioModality


# -- real recordings ---------------------------------------------------------------


@pytest.mark.skipif(not FSDD_PATH.exists(), reason="the spoken-digit data set is not on this machine")
def test_spoken_digits_load_to_finite_log_mels(tmp_path):
    data = np.load(FSDD_PATH)
    offsets, rate = data["offsets"], int(data["sample_rate"])
    audio = data["audio"]
    modality = AudioModality(small_config(n_mels=64))
    paths = []
    for index in (0, 555, 1234, 2999):
        samples = audio[offsets[index] : offsets[index + 1]]
        paths.append(write(tmp_path / str(data["filename"][index]), samples, rate, subtype="PCM_16"))

    batch = modality.collate([modality.prepare(path) for path in paths])
    log_mel = modality.build_decoder(LATENT_DIM).front_end(batch.data)

    assert batch.data.shape == (4, 1, RATE)
    np.testing.assert_allclose(batch.data.abs().amax(dim=(1, 2)).numpy(), 1.0, rtol=1e-6)
    assert log_mel.shape == (4, 1, 64, modality.config.num_frames)
    assert torch.isfinite(log_mel).all()
    assert float(log_mel.std()) > 0.1


def test_snr_corruption_reaches_requested_ratio():
    from polyfuse_audio.modality import AudioConfig, AudioModality

    audio = AudioModality(AudioConfig(sample_rate=8000, duration=1.0, n_fft=256, hop_length=128, n_mels=32))
    clean = torch.sin(torch.arange(8000) / 5.0).unsqueeze(0)
    for snr_db in (10.0, 0.0):
        noisy = audio.corrupt(clean, "snr", snr_db, torch.Generator().manual_seed(0))
        measured = 10 * torch.log10(clean.square().mean() / (noisy - clean).square().mean()).item()
        assert abs(measured - snr_db) < 0.3


def test_mlp_decoder_matches_conv_decoder_shapes():
    from polyfuse_audio.modality import AudioConfig, AudioModality

    for decoder in ("conv", "mlp"):
        audio = AudioModality(AudioConfig(sample_rate=8000, duration=0.5, n_fft=256, hop_length=128, n_mels=32, decoder=decoder, decoder_hidden=64))
        network = audio.build_decoder(4)
        batch = audio.collate([torch.randn(1, 4000) * 0.1, None])
        present = batch.select(torch.tensor([0]))
        assert network.forward(torch.randn(2, 4)).shape == (2, 1, 32, audio.config.num_frames)
        assert torch.isfinite(network.log_likelihood(torch.randn(1, 4), present)).all()


def test_front_end_cache_never_returns_stale_output():
    from polyfuse_audio.modality import AudioConfig, AudioModality

    audio = AudioModality(AudioConfig(sample_rate=8000, duration=0.25, n_fft=256, hop_length=128, n_mels=16))
    encoder, decoder = audio.build_encoder(4), audio.build_decoder(4)
    assert encoder.backbone.front_end is decoder.front_end
    front_end = decoder.front_end
    waveform = torch.randn(2, 1, 2000) * 0.1
    first = front_end(waveform)
    assert front_end(waveform) is first
    waveform.mul_(0.0).add_(torch.randn(2, 1, 2000))  # in-place change bumps the version counter
    changed = front_end(waveform)
    assert changed is not first
    assert torch.allclose(changed, front_end._log_mel(waveform))
    other = waveform.clone()
    assert front_end(other) is not changed
