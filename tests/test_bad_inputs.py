"""Awkward real-world inputs through a manifest: each works, or fails naming its record and field."""

import io
import json
import os

import numpy as np
import pytest
import soundfile
from PIL import Image

from polyfuse.data import prepare_records, read_manifest
from polyfuse.errors import InvalidRecordError
from polyfuse.training import RunConfig

RATE = 8000

CONFIG = {
    "modalities": {
        "image": {"size": [16, 16], "channels": 3, "background": [255, 255, 255]},
        "audio": {"sample_rate": RATE, "duration": 0.5, "n_fft": 256, "hop_length": 128, "n_mels": 32},
        "sensor": {"channels": 2, "sample_rate": 20.0, "length": 32},
        "text": {"max_length": 48},
    }
}


def write_cases(folder):
    """Write one file per awkward case; return manifest records as (id, fields, expected error or None)."""
    folder.mkdir()
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 5, 10))
    palette.save(folder / "palette.png", transparency=0)
    Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10), mode="L").save(folder / "gray.png")
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(buffer, format="JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    (folder / "empty.wav").write_bytes(b"")

    seconds = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 440 * seconds), 0.5 * np.sin(2 * np.pi * 440 * seconds)], 1)
    soundfile.write(folder / "stereo48k.wav", stereo, 48000)
    soundfile.write(folder / "deep.wav", 0.3 * np.sin(2 * np.pi * 300 * np.arange(4000) / RATE), RATE, subtype="PCM_24")
    soundfile.write(folder / "short.wav", 0.5 * np.ones(100), RATE)

    series = np.stack([np.sin(np.arange(60) / 5), np.cos(np.arange(60) / 5)], 1)
    series[20:27, :] = np.nan
    np.save(folder / "gap.npy", series)

    return [
        ("palette", {"image": "palette.png"}, None),
        ("gray", {"image": "gray.png"}, None),
        ("stereo", {"audio": "stereo48k.wav"}, None),
        ("deep", {"audio": "deep.wav"}, None),
        ("short", {"audio": "short.wav"}, None),
        ("cut", {"image": "cut.jpg"}, ("image", "image file is damaged or cut short")),
        ("empty", {"audio": "empty.wav"}, ("audio", "file is empty (0 bytes)")),
        ("gap", {"sensor": "gap.npy"}, None),
        ("long", {"text": "seven " * 1667}, None),
        ("emoji", {"text": "the digit 7 🦄🎉 数字七 七"}, None),
    ]


@pytest.fixture
def manifest(tmp_path):
    cases = write_cases(tmp_path / "data")
    lines = [json.dumps({"id": case_id, **fields}, ensure_ascii=False) for case_id, fields, _ in cases]
    path = tmp_path / "data" / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, cases


@pytest.fixture
def modalities():
    return RunConfig.from_dict(CONFIG).build_modalities()


def test_each_case_works_or_names_record(manifest, modalities, tmp_path, monkeypatch):
    path, cases = manifest
    # Relative paths must resolve against the manifest, not the working directory.
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    records = read_manifest(os.path.relpath(path, other)).records
    with pytest.warns(UserWarning):
        dataset = prepare_records(records, modalities, skip_invalid=True, progress=False)

    failures = {skipped.id: skipped.error for skipped in dataset.skipped}
    for line, (case_id, _, expected) in enumerate(cases, start=1):
        if expected is None:
            assert case_id not in failures, failures.get(case_id)
            continue
        field, reason = expected
        assert f"{path} line {line}, field '{field}': {reason}" in failures[case_id]
        assert str(path.parent / dict(cases[line - 1][1])[field]) in failures[case_id]

    items = {record.id: {name: dataset.items[name][i] for name in dataset.items} for i, record in enumerate(dataset.records)}
    assert items["stereo"]["audio"].shape == (1, RATE // 2)
    assert items["deep"]["audio"].abs().max() > 0.5
    assert np.isfinite(items["short"]["audio"].numpy()).all()
    assert items["palette"]["image"].shape == (3, 16, 16)
    assert items["gray"]["image"].shape == (3, 16, 16)
    gap = items["gap"]["sensor"]
    assert np.isfinite(gap.numpy()).all()
    assert gap[2].min() == 0.0  # the gap is masked out of the likelihood
    assert items["long"]["text"].shape == (48,)
    assert modalities["text"].postprocess(items["emoji"]["text"]) == "the digit 7 🦄🎉 数字七 七"


def test_first_invalid_record_stops_without_skip(manifest, modalities):
    path, _ = manifest
    with pytest.raises(InvalidRecordError) as raised:
        prepare_records(read_manifest(path).records, modalities, progress=False)
    assert f"{path} line 6, field 'image'" in str(raised.value)
    assert "--skip-invalid" in str(raised.value)


def test_stereo_48k_matches_reference_resampling(manifest, modalities):
    path, _ = manifest
    tensor = modalities["audio"].prepare(path.parent / "stereo48k.wav")
    waveform = tensor[0].numpy()
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(len(waveform), 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=4)
