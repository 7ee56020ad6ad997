"""Tests of the built-in data set recipes ``twemoji`` and ``shoulder`` (package polyfuse_datasets).

The tests read the real source files from the folder that ``SOURCE_DIR`` names, which
``$POLYFUSE_DATASETS_SOURCE`` overrides, and are skipped when a file is missing. Builds use
``limit`` to stay fast, while the split tests run the split functions at full size without
writing files. No test uses the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import polyfuse_command, subprocess_env
from polyfuse.data import prepare_records, read_manifest
from polyfuse.errors import ConfigError
from polyfuse.plugins import get_host
from polyfuse.training import RunConfig
from polyfuse_datasets import shoulder
from polyfuse_datasets.checksums import SHOULDER_WATCH, TWEMOJI, arrays_sha256, check_source_file
from polyfuse_datasets.errors import ChecksumError, SourceError, SourceNotFoundError
from polyfuse_datasets.shoulder import (
    EXERCISE_CAPTION_TEMPLATES,
    HOP_SAMPLES,
    SHOULDER_TRAIN_CONFIG,
    TEST_SUBJECTS,
    WINDOW_SAMPLES,
    ShoulderRecipe,
    ShoulderRecordings,
    cut_windows,
    exercise_caption,
    load_shoulder_recordings,
    split_shoulder,
)
from polyfuse_datasets.twemoji import (
    TWEMOJI_TRAIN_CONFIG,
    TwemojiIcons,
    TwemojiRecipe,
    load_twemoji,
    split_twemoji,
    twemoji_captions,
)
from polyfuse_datasets.writing import write_png

SOURCE_DIR = Path(os.environ.get("POLYFUSE_DATASETS_SOURCE", Path(__file__).resolve().parents[2] / "shared" / "data"))
TWEMOJI_LIMIT = 30  # records per split in the limited builds: 3 per category where a category has them
SHOULDER_LIMIT = 28  # records per split in the limited builds: 4 per exercise
TWEMOJI_RECORD_KEYS = {"id", "image", "text", "label", "subcategory", "short_names", "unified", "emoji", "twemoji_index"}
SHOULDER_RECORD_KEYS = {
    "id", "sensor", "text", "label", "exercise", "exercise_code", "subject", "side", "recording", "start_seconds",
}
RECIPES = {"twemoji": (TwemojiRecipe, TWEMOJI), "shoulder": (ShoulderRecipe, SHOULDER_WATCH)}

needs_twemoji = pytest.mark.skipif(
    not (SOURCE_DIR / TWEMOJI.relative_path).is_file(),
    reason=f"{TWEMOJI.relative_path} not found in {SOURCE_DIR}. Set POLYFUSE_DATASETS_SOURCE to a folder that contains it",
)
needs_shoulder = pytest.mark.skipif(
    not (SOURCE_DIR / SHOULDER_WATCH.relative_path).is_file(),
    reason=f"{SHOULDER_WATCH.relative_path} not found in {SOURCE_DIR}. "
    "Set POLYFUSE_DATASETS_SOURCE to a folder that contains it",
)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twemoji_icons() -> TwemojiIcons:
    return load_twemoji(SOURCE_DIR / TWEMOJI.relative_path)


@pytest.fixture(scope="module")
def twemoji_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("twemoji")
    return TwemojiRecipe().build(out, source=SOURCE_DIR, seed=0, limit=TWEMOJI_LIMIT, progress=False)


@pytest.fixture(scope="module")
def twemoji_records(twemoji_build) -> dict[str, list[dict]]:
    return {split: _read_jsonl(path) for split, path in twemoji_build.manifests.items()}


@pytest.fixture(scope="module")
def shoulder_recordings() -> ShoulderRecordings:
    return load_shoulder_recordings(SOURCE_DIR / SHOULDER_WATCH.relative_path)


@pytest.fixture(scope="module")
def shoulder_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("shoulder")
    return ShoulderRecipe().build(out, source=SOURCE_DIR, seed=0, limit=SHOULDER_LIMIT, progress=False)


@pytest.fixture(scope="module")
def shoulder_records(shoulder_build) -> dict[str, list[dict]]:
    return {split: _read_jsonl(path) for split, path in shoulder_build.manifests.items()}


# ---------------------------------------------------------------------------
# Registration and the command line
# ---------------------------------------------------------------------------


def test_recipes_registered():
    registry = get_host().datasets
    assert registry.get("twemoji") is TwemojiRecipe
    assert registry.get("shoulder") is ShoulderRecipe
    assert TwemojiRecipe.needs_source is True
    assert ShoulderRecipe.needs_source is True


def test_datasets_list_cli():
    completed = subprocess.run(
        [*polyfuse_command(), "datasets", "list", "--json"], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    rows = {row["name"]: row for row in json.loads(completed.stdout)["datasets"]}
    for name in ("twemoji", "shoulder"):
        assert rows[name]["plugin"] == "datasets"
        assert rows[name]["needs_source"] is True
        assert rows[name]["description"] == RECIPES[name][0].description


@needs_shoulder
def test_shoulder_cli_build(tmp_path):
    command = [*polyfuse_command(), "datasets", "build", "shoulder", "--out", str(tmp_path), "--source", str(SOURCE_DIR)]
    completed = subprocess.run(
        [*command, "--limit", "7", "--quiet"], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert f"train: 7 records in {tmp_path / 'train.jsonl'}" in completed.stdout
    assert f"test: 7 records in {tmp_path / 'test.jsonl'}" in completed.stdout
    assert "BSD-3-Clause" in completed.stdout


# ---------------------------------------------------------------------------
# twemoji: the limited build on the real source file
# ---------------------------------------------------------------------------


@needs_twemoji
def test_twemoji_build_output(twemoji_build):
    assert twemoji_build.counts == {"train": TWEMOJI_LIMIT, "test": TWEMOJI_LIMIT}
    for split, path in twemoji_build.manifests.items():
        assert path == twemoji_build.out / f"{split}.jsonl"
        assert len(read_manifest(path)) == TWEMOJI_LIMIT
    assert json.loads(twemoji_build.config.read_text()) == TWEMOJI_TRAIN_CONFIG
    assert any("CC BY 4.0" in note for note in twemoji_build.notes)
    assert any("MIT" in note for note in twemoji_build.notes)
    assert any(note.startswith(f"limit {TWEMOJI_LIMIT}") for note in twemoji_build.notes)


@needs_twemoji
def test_twemoji_loads_with_modalities(twemoji_build):
    modalities = RunConfig.from_dict(TWEMOJI_TRAIN_CONFIG).build_modalities()
    assert set(modalities) == {"image", "text"}
    for path in twemoji_build.manifests.values():
        prepared = prepare_records(read_manifest(path).records, modalities, progress=False)
        assert len(prepared) == TWEMOJI_LIMIT
        assert prepared.skipped == []
        for image, text in zip(prepared.items["image"], prepared.items["text"]):
            assert image.shape == (3, 32, 32)
            assert image.dtype == torch.float32
            assert 3 <= text.shape[0] <= TWEMOJI_TRAIN_CONFIG["modalities"]["text"]["max_length"]


@needs_twemoji
def test_twemoji_transparency_composited(twemoji_build, twemoji_records, twemoji_icons):
    # A 64x64 icon whose 8x8 corner is transparent keeps a transparent corner pixel at 32x32,
    # and the image modality composites it onto the configured white background.
    modalities = RunConfig.from_dict(TWEMOJI_TRAIN_CONFIG).build_modalities()
    records = read_manifest(twemoji_build.manifests["test"]).records
    prepared = prepare_records(records, modalities, progress=False)
    transparent = [
        position
        for position, record in enumerate(twemoji_records["test"])
        if not twemoji_icons.images[record["twemoji_index"], :8, :8, 3].any()
    ]
    assert transparent
    for position in transparent:
        torch.testing.assert_close(prepared.items["image"][position][:, 0, 0], torch.ones(3))


@needs_twemoji
def test_twemoji_records_keys(twemoji_build, twemoji_records):
    for split, records in twemoji_records.items():
        ids = [record["id"] for record in records]
        assert len(set(ids)) == len(ids)
        for record in records:
            assert set(record) == TWEMOJI_RECORD_KEYS
            assert record["id"].startswith(f"{split}-")
            assert record["image"] == f"images/{split}/{record['id']}.png"
            assert (twemoji_build.out / record["image"]).is_file()


@needs_twemoji
def test_twemoji_png_exact(twemoji_build, twemoji_records, twemoji_icons):
    for records in twemoji_records.values():
        for record in records:
            with Image.open(twemoji_build.out / record["image"]) as image:
                assert image.mode == "RGBA"
                assert image.size == (64, 64)
                pixels = np.asarray(image)
            np.testing.assert_array_equal(pixels, twemoji_icons.images[record["twemoji_index"]])


@needs_twemoji
def test_twemoji_record_fields(twemoji_records, twemoji_icons):
    captions = twemoji_captions(twemoji_icons.names, twemoji_icons.short_names)
    for records in twemoji_records.values():
        for record in records:
            row = record["twemoji_index"]
            assert record["text"] == captions[row]
            assert record["label"] == str(twemoji_icons.categories[row])
            assert record["subcategory"] == str(twemoji_icons.subcategories[row])
            assert record["short_names"] == str(twemoji_icons.short_names[row]).split()
            assert record["unified"] == str(twemoji_icons.unified[row])
            assert record["emoji"] == str(twemoji_icons.emoji[row])
            # The emoji string is the code points that ``unified`` spells in hexadecimal.
            assert "-".join(f"{ord(character):04X}" for character in record["emoji"]) == record["unified"]


@needs_twemoji
def test_twemoji_limit_balanced_subset(twemoji_records, twemoji_icons):
    rows_by_split = split_twemoji(twemoji_icons.categories, seed=0)
    for split, records in twemoji_records.items():
        available = Counter(twemoji_icons.categories[rows_by_split[split]].tolist())
        counts = Counter(record["label"] for record in records)
        assert set(counts) == set(available)
        # Categories that have enough emoji differ by at most one record.
        full = [count for label, count in counts.items() if count < available[label]]
        assert max(full) - min(full) <= 1
        for record in records:
            # The id is the record's position in the full split.
            position = int(record["id"].split("-")[1])
            assert rows_by_split[split][position] == record["twemoji_index"]
    train_rows = {record["twemoji_index"] for record in twemoji_records["train"]}
    test_rows = {record["twemoji_index"] for record in twemoji_records["test"]}
    assert not train_rows & test_rows


@needs_twemoji
def test_twemoji_same_seed_same_build(tmp_path, twemoji_build, twemoji_records):
    again = TwemojiRecipe().build(tmp_path / "again", source=SOURCE_DIR, seed=0, limit=TWEMOJI_LIMIT, progress=False)
    for split, records in twemoji_records.items():
        assert _read_jsonl(again.manifests[split]) == records
        first = records[0]["image"]
        assert (again.out / first).read_bytes() == (twemoji_build.out / first).read_bytes()
    other = TwemojiRecipe().build(tmp_path / "other", source=SOURCE_DIR, seed=1, limit=TWEMOJI_LIMIT, progress=False)
    other_rows = {record["twemoji_index"] for record in _read_jsonl(other.manifests["test"])}
    assert other_rows != {record["twemoji_index"] for record in twemoji_records["test"]}


# ---------------------------------------------------------------------------
# twemoji: the split and the captions at full size
# ---------------------------------------------------------------------------


@needs_twemoji
def test_twemoji_split_stratified(twemoji_icons):
    split = split_twemoji(twemoji_icons.categories, seed=0)
    train, test = split["train"], split["test"]
    assert len(train) == 1624
    assert len(test) == 287
    assert not set(train.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1911))
    totals = Counter(twemoji_icons.categories.tolist())
    in_test = Counter(twemoji_icons.categories[test].tolist())
    assert len(totals) == 10
    for category, total in totals.items():
        assert abs(in_test[category] - 0.15 * total) <= 1, category


@needs_twemoji
def test_twemoji_split_seeded(twemoji_icons):
    first = split_twemoji(twemoji_icons.categories, seed=0)
    np.testing.assert_array_equal(split_twemoji(twemoji_icons.categories, seed=0)["test"], first["test"])
    assert not np.array_equal(split_twemoji(twemoji_icons.categories, seed=1)["test"], first["test"])


@needs_twemoji
def test_twemoji_captions_from_names(twemoji_icons):
    captions = twemoji_captions(twemoji_icons.names, twemoji_icons.short_names)
    assert len(captions) == 1911
    assert len(set(captions)) == 1911
    assert captions[0] == "grinning face"
    assert captions[700] == "tulip"
    assert "egypt flag" in captions
    # Rows 357 and 358 share the name "MAN IN TUXEDO" and take their first short names instead.
    assert captions[357] == "person in tuxedo"
    assert captions[358] == "man in tuxedo"
    # Every other caption is the lower-cased name, and so is "man in tuxedo".
    renamed = [row for row, name in enumerate(twemoji_icons.names) if captions[row] != str(name).lower()]
    assert renamed == [357]


def test_twemoji_captions_shared_name():
    names = np.asarray(["TULIP", "MAN IN TUXEDO", "MAN IN TUXEDO"])
    short_names = np.asarray(["tulip", "person_in_tuxedo tuxedo", "man_in_tuxedo"])
    assert twemoji_captions(names, short_names) == ["tulip", "person in tuxedo", "man in tuxedo"]


# ---------------------------------------------------------------------------
# shoulder: the limited build on the real source file
# ---------------------------------------------------------------------------


@needs_shoulder
def test_shoulder_build_output(shoulder_build):
    assert shoulder_build.counts == {"train": SHOULDER_LIMIT, "test": SHOULDER_LIMIT}
    for split, path in shoulder_build.manifests.items():
        assert path == shoulder_build.out / f"{split}.jsonl"
        assert len(read_manifest(path)) == SHOULDER_LIMIT
    assert json.loads(shoulder_build.config.read_text()) == SHOULDER_TRAIN_CONFIG
    assert any("BSD-3-Clause" in note for note in shoulder_build.notes)
    assert any("Burns" in note and "10.1088/1361-6579/aacfd9" in note for note in shoulder_build.notes)


@needs_shoulder
def test_shoulder_loads_with_modalities(shoulder_build):
    modalities = RunConfig.from_dict(SHOULDER_TRAIN_CONFIG).build_modalities()
    assert set(modalities) == {"sensor", "text"}
    for path in shoulder_build.manifests.values():
        prepared = prepare_records(read_manifest(path).records, modalities, progress=False)
        assert len(prepared) == SHOULDER_LIMIT
        assert prepared.skipped == []
        for series, text in zip(prepared.items["sensor"], prepared.items["text"]):
            assert series.shape == (7, WINDOW_SAMPLES)  # 6 channels and the observed-step row
            assert torch.all(series[6] == 1)
            assert text.shape[0] <= SHOULDER_TRAIN_CONFIG["modalities"]["text"]["max_length"]


@needs_shoulder
def test_shoulder_records_keys(shoulder_build, shoulder_records):
    for split, records in shoulder_records.items():
        ids = [record["id"] for record in records]
        assert len(set(ids)) == len(ids)
        for record in records:
            assert set(record) == SHOULDER_RECORD_KEYS
            assert record["id"].startswith(f"{split}-")
            assert record["sensor"] == f"sensor/{split}/{record['id']}.npy"
            assert (shoulder_build.out / record["sensor"]).is_file()


@needs_shoulder
def test_shoulder_windows_exact(shoulder_build, shoulder_records, shoulder_recordings):
    for records in shoulder_records.values():
        for record in records:
            series = np.load(shoulder_build.out / record["sensor"])
            assert series.dtype == np.float32
            assert series.shape == (WINDOW_SAMPLES, 6)
            start = round(record["start_seconds"] * 50)
            assert start % HOP_SAMPLES == 0
            expected = shoulder_recordings.recording(record["recording"])[start : start + WINDOW_SAMPLES]
            np.testing.assert_array_equal(series, expected)


@needs_shoulder
def test_shoulder_record_fields(shoulder_records, shoulder_recordings):
    names = [str(name) for name in shoulder_recordings.exercise_names]
    codes = [str(code) for code in shoulder_recordings.exercise_codes]
    for records in shoulder_records.values():
        for record in records:
            row = record["recording"]
            label = record["label"]
            assert isinstance(label, int)
            assert label == int(shoulder_recordings.labels[row])
            assert record["exercise"] == names[label]
            assert record["exercise_code"] == codes[label]
            assert record["subject"] == int(shoulder_recordings.subjects[row])
            assert record["side"] == ("right" if shoulder_recordings.sides[row] == 1 else "left")
            assert names[label].lower() in record["text"]


@needs_shoulder
def test_shoulder_limit_split_by_subject(shoulder_records):
    test_subjects = {record["subject"] for record in shoulder_records["test"]}
    train_subjects = {record["subject"] for record in shoulder_records["train"]}
    assert test_subjects <= set(TEST_SUBJECTS)
    assert not train_subjects & set(TEST_SUBJECTS)
    for records in shoulder_records.values():
        assert Counter(record["label"] for record in records) == {label: SHOULDER_LIMIT // 7 for label in range(7)}


@needs_shoulder
def test_shoulder_same_seed_same_build(tmp_path, shoulder_build, shoulder_records):
    again = ShoulderRecipe().build(tmp_path / "again", source=SOURCE_DIR, seed=0, limit=SHOULDER_LIMIT, progress=False)
    for split, records in shoulder_records.items():
        assert _read_jsonl(again.manifests[split]) == records
        first = records[0]["sensor"]
        assert (again.out / first).read_bytes() == (shoulder_build.out / first).read_bytes()
    other = ShoulderRecipe().build(tmp_path / "other", source=SOURCE_DIR, seed=1, limit=SHOULDER_LIMIT, progress=False)
    other_records = _read_jsonl(other.manifests["train"])
    assert [record["text"] for record in other_records] != [record["text"] for record in shoulder_records["train"]]


@needs_shoulder
def test_interrupted_build_leaves_no_manifest(tmp_path, monkeypatch):
    ShoulderRecipe().build(tmp_path, source=SOURCE_DIR, seed=0, limit=7, progress=False)
    assert (tmp_path / "train.jsonl").is_file()
    written = []

    class Interrupted(Exception):
        pass

    def failing_write_npy(path, array):
        # Fails among the test windows, after every train window was written.
        if len(written) == 10:
            raise Interrupted
        written.append(path)

    monkeypatch.setattr(shoulder, "write_npy", failing_write_npy)
    with pytest.raises(Interrupted):
        ShoulderRecipe().build(tmp_path, source=SOURCE_DIR, seed=1, limit=7, progress=False)
    assert not (tmp_path / "train.jsonl").exists()
    assert not (tmp_path / "test.jsonl").exists()


# ---------------------------------------------------------------------------
# shoulder: windows and the subject split at full size
# ---------------------------------------------------------------------------


@needs_shoulder
def test_shoulder_split_by_subject(shoulder_recordings):
    windows = split_shoulder(shoulder_recordings)
    train_subjects = set(shoulder_recordings.subjects[windows["train"].recordings].tolist())
    test_subjects = set(shoulder_recordings.subjects[windows["test"].recordings].tolist())
    assert test_subjects == {9, 10}
    assert train_subjects == set(range(1, 9))
    assert len(windows["train"]) == 1751
    assert len(windows["test"]) == 478
    assert Counter(windows["test"].labels.tolist()) == Counter(
        shoulder_recordings.labels[windows["test"].recordings].tolist()
    )


@needs_shoulder
def test_shoulder_windows_cover_recordings(shoulder_recordings):
    rows = np.arange(len(shoulder_recordings.labels))
    windows = cut_windows(shoulder_recordings, rows)
    lengths = np.diff(shoulder_recordings.offsets)
    per_recording = Counter(windows.recordings.tolist())
    for row in rows:
        assert per_recording[row] == (lengths[row] - WINDOW_SAMPLES) // HOP_SAMPLES + 1
    assert np.all(windows.starts % HOP_SAMPLES == 0)
    assert np.all(windows.starts + WINDOW_SAMPLES <= lengths[windows.recordings])
    assert np.all(np.diff(windows.recordings) >= 0)
    assert len(windows) == 2229


def test_cut_windows_short_recording():
    recordings = ShoulderRecordings(
        signals=np.arange(60 * 6, dtype=np.float32).reshape(60, 6),
        offsets=np.asarray([0, 5, 60]),
        labels=np.asarray([3, 1], dtype=np.uint8),
        exercise_codes=np.asarray(["PEN", "ABD", "FEL", "IR"]),
        exercise_names=np.asarray(["Pendulum", "Abduction", "Forward elevation", "Internal rotation"]),
        subjects=np.asarray([1, 2], dtype=np.uint8),
        sides=np.asarray([0, 1], dtype=np.uint8),
        sample_rate=50.0,
    )
    windows = cut_windows(recordings, np.asarray([0, 1]), window=20, hop=15)
    np.testing.assert_array_equal(windows.recordings, [1, 1, 1])  # recording 0 is shorter than a window
    np.testing.assert_array_equal(windows.starts, [0, 15, 30])
    np.testing.assert_array_equal(windows.labels, [1, 1, 1])
    assert windows.window == 20
    with pytest.raises(ValueError, match="window and hop must be >= 1 sample, got window 20 and hop 0"):
        cut_windows(recordings, np.asarray([1]), window=20, hop=0)


def test_exercise_captions_fit_text_length():
    names = [
        "Pendulum", "Abduction", "Forward elevation", "Internal rotation with resistance band",
        "External rotation with resistance band", "Lower trapezius row with resistance band",
        "Bent over row with 3 lb dumbbell",
    ]
    # bos and eos take two of the max_length ids, and the byte tokenizer spends one id per byte.
    budget = SHOULDER_TRAIN_CONFIG["modalities"]["text"]["max_length"] - 2
    captions = [exercise_caption(name, template) for name in names for template in range(len(EXERCISE_CAPTION_TEMPLATES))]
    assert max(len(text.encode("utf-8")) for text in captions) <= budget
    assert exercise_caption("External rotation with resistance band", 2) == "a patient doing external rotation with resistance band"
    assert exercise_caption("Pendulum", 1) == "pendulum exercise"


# ---------------------------------------------------------------------------
# Checking the source files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_checksum_mismatch_names_file(tmp_path, recipe_name):
    recipe_class, spec = RECIPES[recipe_name]
    published = SOURCE_DIR / spec.relative_path
    if not published.is_file():
        pytest.skip(f"{spec.relative_path} not found in {SOURCE_DIR}")
    with np.load(published) as archive:
        arrays = {name: archive[name] for name in archive.files}
    first = arrays["images"] if recipe_name == "twemoji" else arrays["signals"]
    first.flat[0] += 1
    modified = tmp_path / "source" / spec.relative_path
    modified.parent.mkdir(parents=True)
    np.savez(modified, **arrays)
    with pytest.raises(ChecksumError) as caught:
        recipe_class().build(tmp_path / "out", source=tmp_path / "source", limit=7, progress=False)
    message = str(caught.value)
    assert str(modified) in message
    assert spec.sha256 in message
    assert _sha256(modified) in message
    assert spec.arrays_sha256 in message
    assert "by hand" in message
    assert not (tmp_path / "out" / "train.jsonl").exists()


@needs_shoulder
def test_resaved_copy_accepted(tmp_path):
    # Other npz bytes around the same arrays pass through the arrays pin.
    copy = tmp_path / "shoulder_watch.npz"
    with np.load(SOURCE_DIR / SHOULDER_WATCH.relative_path) as archive:
        np.savez(copy, **{name: archive[name] for name in archive.files})
    assert _sha256(copy) != SHOULDER_WATCH.sha256
    check_source_file(copy, SHOULDER_WATCH)


@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_source_pins_match_published_files(recipe_name):
    spec = RECIPES[recipe_name][1]
    path = SOURCE_DIR / spec.relative_path
    if not path.is_file():
        pytest.skip(f"{spec.relative_path} not found in {SOURCE_DIR}")
    assert _sha256(path) == spec.sha256
    with np.load(path) as archive:
        assert arrays_sha256({name: archive[name] for name in archive.files}) == spec.arrays_sha256


@pytest.mark.parametrize(
    ("recipe_name", "upstream"),
    [("twemoji", "emoji-datasource-twitter@16.0.0"), ("shoulder", "seglearn-1.2.5")],
)
def test_source_missing_file(tmp_path, recipe_name, upstream):
    recipe_class, spec = RECIPES[recipe_name]
    (tmp_path / "source").mkdir()
    expected_path = tmp_path / "source" / spec.relative_path
    with pytest.raises(SourceNotFoundError) as caught:
        recipe_class().build(tmp_path / "out", source=tmp_path / "source", progress=False)
    message = str(caught.value)
    assert f"source file {expected_path} not found" in message
    assert spec.sha256 in message
    assert upstream in message
    assert "--source" in message
    assert "cannot fetch" not in message


@pytest.mark.parametrize(
    ("recipe_name", "upstream"),
    [("twemoji", "emoji-datasource-twitter@16.0.0"), ("shoulder", "seglearn-1.2.5")],
)
def test_fetch_not_supported(tmp_path, recipe_name, upstream):
    recipe_class, spec = RECIPES[recipe_name]
    with pytest.raises(SourceNotFoundError, match=f"the {recipe_name} recipe cannot fetch {spec.relative_path}") as caught:
        recipe_class().build(tmp_path / "out", fetch=True, progress=False)
    assert upstream in str(caught.value)
    assert "by hand" in str(caught.value)
    (tmp_path / "source").mkdir()
    with pytest.raises(SourceNotFoundError, match=f"not found, and the {recipe_name} recipe cannot fetch it"):
        recipe_class().build(tmp_path / "out", source=tmp_path / "source", fetch=True, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_source_required(tmp_path, recipe_name):
    recipe_class, spec = RECIPES[recipe_name]
    with pytest.raises(SourceError, match=f"the {recipe_name} recipe needs its source file {spec.relative_path}"):
        recipe_class().build(tmp_path, source=None, fetch=False)
    with pytest.raises(SourceNotFoundError, match="source folder .* not found"):
        recipe_class().build(tmp_path, source=tmp_path / "absent")


@pytest.mark.parametrize(
    ("seed", "limit", "message"), [(-1, None, "seed must be"), (0, 0, "limit must be"), (0, 2.5, "limit must be")]
)
@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_build_rejects_bad_arguments(tmp_path, recipe_name, seed, limit, message):
    with pytest.raises(ConfigError, match=message):
        RECIPES[recipe_name][0]().build(tmp_path, source=SOURCE_DIR, seed=seed, limit=limit)


# ---------------------------------------------------------------------------
# Writing RGBA images
# ---------------------------------------------------------------------------


def test_write_png_rgba_exact(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    pixels[0, 0] = (200, 10, 30, 0)  # a transparent pixel keeps its colour
    write_png(tmp_path / "rgba.png", pixels)
    with Image.open(tmp_path / "rgba.png") as image:
        assert image.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(image), pixels)
    write_png(tmp_path / "rgb.png", pixels[..., :3].copy())
    with Image.open(tmp_path / "rgb.png") as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), pixels[..., :3])


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 4, 2), dtype=np.uint8), np.zeros((4, 4, 4), dtype=np.float32), np.zeros(4, dtype=np.uint8)]
)
def test_write_png_rejects_bad_pixels(tmp_path, pixels):
    with pytest.raises(ValueError, match=r"PNG pixels must be a \(H, W\), \(H, W, 3\) or \(H, W, 4\) uint8 array, got shape"):
        write_png(tmp_path / "bad.png", pixels)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
