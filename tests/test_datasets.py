"""Tests of the built-in data set recipes ``digits`` and ``sklearn-digits`` (package polyfuse_datasets).

The digits tests read the real source files from the folder that ``SOURCE_DIR`` names, which
``$POLYFUSE_DIGITS_SOURCE`` overrides, and are skipped when it is missing. No test uses the
network: downloads are served from files the tests create, or from a server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import threading
import time
import urllib.error
import wave
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from polyfuse.data.dataset import prepare_records
from polyfuse.data.manifest import read_manifest
from polyfuse.errors import ConfigError
from polyfuse.plugins import get_host
from polyfuse.training.config import RunConfig
from polyfuse_datasets import conversion, digits, originals
from polyfuse_datasets.captions import CAPTION_TEMPLATES, NUMBER_WORDS, caption, choose_captions
from polyfuse_datasets.checksums import (
    DIGITS_SOURCE_FILES,
    FSDD,
    MNIST_TEST,
    MNIST_TRAIN,
    arrays_sha256,
    check_source_file,
)
from polyfuse_datasets.digits import DIGITS_TRAIN_CONFIG, DigitsRecipe, pair_digits_sources
from polyfuse_datasets.errors import ChecksumError, DownloadError, SourceError, SourceNotFoundError
from polyfuse_datasets.pairing import balanced_subset, pair_digits
from polyfuse_datasets.sklearn_digits import SKLEARN_DIGITS_TRAIN_CONFIG, SklearnDigitsRecipe
from polyfuse_datasets.sources import DigitsSources, load_digits_sources, locate_digits_sources

SOURCE_DIR = Path(os.environ.get("POLYFUSE_DIGITS_SOURCE", Path(__file__).resolve().parents[2] / "shared" / "data"))
LIMIT = 30  # records per split in the limited builds: 3 per digit
PENDIGITS_RAW = SOURCE_DIR / "pendigits" / "raw"
PENDIGITS_ORIGINALS = ("pendigits-orig.tra.Z", "pendigits-orig.tes.Z", "pendigits.tra", "pendigits.tes")
DIGITS_RECORD_KEYS = {
    "id", "image", "audio", "sensor", "text", "label",
    "mnist_index", "fsdd_file", "fsdd_speaker", "pendigits_index", "pendigits_writer",
}

needs_sources = pytest.mark.skipif(
    not all((SOURCE_DIR / spec.relative_path).is_file() for spec in DIGITS_SOURCE_FILES),
    reason=f"digits source files not found in {SOURCE_DIR}. Set POLYFUSE_DIGITS_SOURCE to a folder "
    "with mnist/, fsdd/ and pendigits/",
)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources() -> DigitsSources:
    paths = locate_digits_sources(SOURCE_DIR, fetch=False, cache=SOURCE_DIR / "unused", progress=False)
    return load_digits_sources(paths)


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    return DigitsRecipe().build(out, source=SOURCE_DIR, seed=0, limit=LIMIT, progress=False)


@pytest.fixture(scope="module")
def digits_records(digits_build) -> dict[str, list[dict]]:
    return {split: _read_jsonl(path) for split, path in digits_build.manifests.items()}


@pytest.fixture(scope="module")
def full_pairing(sources):
    return pair_digits_sources(sources, seed=0)


@pytest.fixture(scope="module")
def sklearn_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("sklearn_digits")
    return SklearnDigitsRecipe().build(out, seed=0, limit=40, progress=True)


@pytest.fixture(scope="module")
def original_files(tmp_path_factory, sources) -> dict[str, Path]:
    """Public original files rebuilt from the source npz files, keyed by ``Download.filename``.

    The MNIST files get other gzip bytes than upstream, so their download pins do not apply.
    The FSDD archive has no download pin, and the pendigits files are the real originals.
    """
    if not all((PENDIGITS_RAW / name).is_file() for name in PENDIGITS_ORIGINALS):
        pytest.skip(f"raw pendigits files not found in {PENDIGITS_RAW}")
    folder = tmp_path_factory.mktemp("originals")
    files = {
        "t10k-images-idx3-ubyte.gz": _write_idx(folder / "t10k-images-idx3-ubyte.gz", sources.mnist_test.images, 0x803),
        "t10k-labels-idx1-ubyte.gz": _write_idx(folder / "t10k-labels-idx1-ubyte.gz", sources.mnist_test.labels, 0x801),
        "mnist_5k.csv.gz": _write_mnist_csv(folder / "mnist_5k.csv.gz", sources.mnist_train),
        "free-spoken-digit-dataset.zip": _write_fsdd_zip(folder / "free-spoken-digit-dataset.zip", sources.fsdd),
    }
    for name in PENDIGITS_ORIGINALS:
        files[name] = PENDIGITS_RAW / name
    return files


@pytest.fixture
def served_originals(monkeypatch, original_files):
    """Replace the downloader with one that copies ``original_files`` and records each URL it was given."""
    for key in (MNIST_TRAIN.key, MNIST_TEST.key):
        original = originals.ORIGINALS[key]
        downloads = tuple(
            dataclasses.replace(item, sha256=_sha256(original_files[item.filename])) for item in original.downloads
        )
        monkeypatch.setitem(originals.ORIGINALS, key, dataclasses.replace(original, downloads=downloads))
    filename_of_url = {item.url: item.filename for original in originals.ORIGINALS.values() for item in original.downloads}
    requested: list[str] = []

    def fake_download(url, path, *, timeout=originals.DOWNLOAD_TIMEOUT_S, progress=True):
        requested.append(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original_files[filename_of_url[url]], path)
        return path

    monkeypatch.setattr(originals, "download", fake_download)
    return requested


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------


def test_recipes_registered():
    registry = get_host().datasets
    assert "digits" in registry.names()
    assert "sklearn-digits" in registry.names()
    assert registry.get("digits") is DigitsRecipe
    assert registry.get("sklearn-digits") is SklearnDigitsRecipe
    assert DigitsRecipe.needs_source is True
    assert SklearnDigitsRecipe.needs_source is False


# ---------------------------------------------------------------------------
# digits: the limited build on the real source files
# ---------------------------------------------------------------------------


@needs_sources
def test_digits_build_output(digits_build):
    assert digits_build.counts == {"train": LIMIT, "test": LIMIT}
    assert set(digits_build.manifests) == {"train", "test"}
    for split, path in digits_build.manifests.items():
        assert path == digits_build.out / f"{split}.jsonl"
        assert len(read_manifest(path)) == LIMIT
    assert json.loads(digits_build.config.read_text()) == DIGITS_TRAIN_CONFIG
    assert RunConfig.from_file(digits_build.config).model.latent_dim == DIGITS_TRAIN_CONFIG["model"]["latent_dim"]
    assert any("CC BY-SA 4.0" in note for note in digits_build.notes)


@needs_sources
def test_digits_loads_with_run_config(digits_build):
    config = RunConfig.from_file(digits_build.config)
    missing = sorted(set(config.modalities) - set(get_host().modalities.names()))
    if missing:
        pytest.skip(f"modality plugins not installed: {', '.join(missing)}")
    records = read_manifest(digits_build.manifests["test"]).records
    prepared = prepare_records(records, config.build_modalities(), progress=False)
    assert len(prepared.records) == LIMIT
    assert prepared.skipped == []


@needs_sources
def test_digits_records_keys(digits_records):
    for split, records in digits_records.items():
        ids = [record["id"] for record in records]
        assert len(set(ids)) == len(ids)
        for record in records:
            assert set(record) == DIGITS_RECORD_KEYS
            assert record["id"].startswith(f"{split}-")
            assert record["image"] == f"images/{split}/{record['id']}.png"
            assert record["audio"] == f"audio/{split}/{record['id']}.wav"
            assert record["sensor"] == f"sensor/{split}/{record['id']}.npy"


@needs_sources
def test_digits_images_exact(digits_build, digits_records, sources):
    for split, records in digits_records.items():
        mnist = sources.mnist_train if split == "train" else sources.mnist_test
        for record in records:
            with Image.open(digits_build.out / record["image"]) as image:
                assert image.mode == "L"
                assert image.size == (28, 28)
                pixels = np.asarray(image)
            np.testing.assert_array_equal(pixels, mnist.images[record["mnist_index"]])


@needs_sources
def test_digits_audio_exact(digits_build, digits_records, sources):
    row_of_file = {str(name): row for row, name in enumerate(sources.fsdd.filenames)}
    for records in digits_records.values():
        for record in records:
            path = digits_build.out / record["audio"]
            info = soundfile.info(path)
            assert info.samplerate == 8000
            assert info.channels == 1
            assert info.subtype == "PCM_16"
            samples, sample_rate = soundfile.read(path, dtype="int16")
            assert sample_rate == 8000
            np.testing.assert_array_equal(samples, sources.fsdd.clip(row_of_file[record["fsdd_file"]]))


@needs_sources
def test_digits_sensor_exact(digits_build, digits_records, sources):
    for records in digits_records.values():
        for record in records:
            series = np.load(digits_build.out / record["sensor"])
            assert series.dtype == np.float32
            assert series.ndim == 2
            assert series.shape[1] == 3
            np.testing.assert_array_equal(series, sources.pendigits.trajectory(record["pendigits_index"]))


@needs_sources
def test_digits_labels_agree(digits_records, sources):
    row_of_file = {str(name): row for row, name in enumerate(sources.fsdd.filenames)}
    for split, records in digits_records.items():
        mnist = sources.mnist_train if split == "train" else sources.mnist_test
        for record in records:
            label = record["label"]
            fsdd_row = row_of_file[record["fsdd_file"]]
            assert isinstance(label, int)
            assert int(mnist.labels[record["mnist_index"]]) == label
            assert int(sources.fsdd.labels[fsdd_row]) == label
            assert int(sources.pendigits.labels[record["pendigits_index"]]) == label
            assert record["fsdd_speaker"] == str(sources.fsdd.speaker_names[sources.fsdd.speakers[fsdd_row]])
            assert record["pendigits_writer"] == int(sources.pendigits.writers[record["pendigits_index"]])
            assert NUMBER_WORDS[label] in record["text"] or str(label) in record["text"]


@needs_sources
def test_digits_splits_use_own_sources(digits_records, sources):
    row_of_file = {str(name): row for row, name in enumerate(sources.fsdd.filenames)}
    for split, records in digits_records.items():
        is_test = split == "test"
        for record in records:
            assert bool(sources.fsdd.is_test[row_of_file[record["fsdd_file"]]]) is is_test
            assert int(sources.pendigits.split[record["pendigits_index"]]) == int(is_test)
            # Writers 0-29 wrote the pendigits training file and 30-43 the test file.
            assert (int(sources.pendigits.writers[record["pendigits_index"]]) >= 30) is is_test
    assert max(record["mnist_index"] for record in digits_records["train"]) < len(sources.mnist_train.labels)


@needs_sources
def test_digits_limit_balanced_subset(digits_records, full_pairing):
    for split, records in digits_records.items():
        assert Counter(record["label"] for record in records) == {digit: LIMIT // 10 for digit in range(10)}
        pairing = getattr(full_pairing, split)
        for record in records:
            # The id is the record's position in the full pairing.
            position = int(record["id"].split("-")[1])
            assert record["mnist_index"] == pairing.mnist[position]
            assert record["pendigits_index"] == pairing.pendigits[position]
    test_trajectories = [record["pendigits_index"] for record in digits_records["test"]]
    assert len(set(test_trajectories)) == len(test_trajectories)


@needs_sources
def test_digits_same_seed_same_files(tmp_path, digits_records):
    output = DigitsRecipe().build(tmp_path, source=SOURCE_DIR, seed=0, limit=LIMIT, progress=False)
    assert _read_jsonl(output.manifests["train"]) == digits_records["train"]
    assert _read_jsonl(output.manifests["test"]) == digits_records["test"]


@needs_sources
def test_interrupted_build_leaves_no_manifest(tmp_path, monkeypatch):
    DigitsRecipe().build(tmp_path, source=SOURCE_DIR, seed=0, limit=10, progress=False)
    assert (tmp_path / "train.jsonl").is_file()
    written = []

    class Interrupted(Exception):
        pass

    def failing_write_png(path, pixels):
        if len(written) == 5:
            raise Interrupted
        written.append(path)

    monkeypatch.setattr(digits, "write_png", failing_write_png)
    with pytest.raises(Interrupted):
        DigitsRecipe().build(tmp_path, source=SOURCE_DIR, seed=1, limit=10, progress=False)
    assert not (tmp_path / "train.jsonl").exists()
    assert not (tmp_path / "test.jsonl").exists()


# ---------------------------------------------------------------------------
# digits: the pairing protocol at full size
# ---------------------------------------------------------------------------


@needs_sources
def test_pairing_full_sizes(full_pairing, sources):
    train, test = full_pairing.train, full_pairing.test
    assert len(train) == 5000
    assert len(test) == 2000
    np.testing.assert_array_equal(train.mnist, np.arange(5000))
    np.testing.assert_array_equal(train.labels, sources.mnist_train.labels)
    assert Counter(test.labels.tolist()) == {digit: 200 for digit in range(10)}
    assert len(np.unique(test.mnist)) == 2000
    assert len(np.unique(test.pendigits)) == 2000


@needs_sources
def test_pairing_labels_and_splits(full_pairing, sources):
    for split, pairing in (("train", full_pairing.train), ("test", full_pairing.test)):
        mnist = sources.mnist_train if split == "train" else sources.mnist_test
        np.testing.assert_array_equal(mnist.labels[pairing.mnist], pairing.labels)
        np.testing.assert_array_equal(sources.fsdd.labels[pairing.fsdd], pairing.labels)
        np.testing.assert_array_equal(sources.pendigits.labels[pairing.pendigits], pairing.labels)
        assert np.all(sources.fsdd.is_test[pairing.fsdd] == (split == "test"))
        assert np.all(sources.pendigits.split[pairing.pendigits] == (1 if split == "test" else 0))


@needs_sources
def test_pairing_fsdd_test_reuse(full_pairing, sources):
    uses = Counter(full_pairing.test.fsdd.tolist())
    assert set(uses) == set(np.flatnonzero(sources.fsdd.is_test).tolist())  # all 300 test clips
    assert set(uses.values()) == {6, 7}
    assert sum(uses.values()) == 2000


@needs_sources
def test_pairing_train_draws_with_replacement(full_pairing, sources):
    train = full_pairing.train
    # 500 images per digit drawn from 270 training clips per digit must repeat clips.
    assert len(np.unique(train.fsdd)) < len(train.fsdd)
    assert len(np.unique(train.fsdd)) > 2000
    assert len(np.unique(train.pendigits)) > 3000


@needs_sources
def test_pairing_seed_reproducible(full_pairing, sources):
    again = pair_digits_sources(sources, seed=0)
    other = pair_digits_sources(sources, seed=1)
    for split in ("train", "test"):
        for column in ("labels", "mnist", "fsdd", "pendigits"):
            expected = getattr(getattr(full_pairing, split), column)
            np.testing.assert_array_equal(getattr(getattr(again, split), column), expected)
    assert not np.array_equal(other.train.fsdd, full_pairing.train.fsdd)
    assert not np.array_equal(other.train.pendigits, full_pairing.train.pendigits)
    assert not np.array_equal(other.test.mnist, full_pairing.test.mnist)
    assert not np.array_equal(other.test.fsdd, full_pairing.test.fsdd)


def test_pairing_rejects_short_digit():
    labels = np.repeat(np.arange(10), 300)
    fsdd_is_test = np.arange(len(labels)) % 2 == 0
    pendigits_split = np.tile(np.arange(300) < 250, 10).astype(np.uint8)  # 250 test, 50 train per digit
    pendigits_split[labels == 4] = 0  # no test trajectory of digit 4
    with pytest.raises(ValueError, match=r"200 pendigits test trajectories per digit, but digits \[4\] have \[0\]"):
        pair_digits(labels, labels, labels, fsdd_is_test, labels, pendigits_split, seed=0)
    pair_digits(labels, labels, labels, fsdd_is_test, labels, np.tile(np.arange(300) < 250, 10), seed=0)


def test_balanced_subset_counts():
    labels = np.repeat(np.arange(10), 50)
    positions = balanced_subset(labels, 25, np.random.default_rng(0))
    assert len(positions) == 25
    assert np.all(np.diff(positions) > 0)
    counts = Counter(labels[positions].tolist())
    assert max(counts.values()) - min(counts.values()) == 1
    np.testing.assert_array_equal(positions, balanced_subset(labels, 25, np.random.default_rng(0)))
    assert not np.array_equal(positions, balanced_subset(labels, 25, np.random.default_rng(1)))


def test_balanced_subset_short_label():
    labels = np.asarray([0, 0] + [1] * 10)
    positions = balanced_subset(labels, 6, np.random.default_rng(0))
    assert Counter(labels[positions].tolist()) == {0: 2, 1: 4}
    np.testing.assert_array_equal(balanced_subset(labels, None, np.random.default_rng(0)), np.arange(12))
    np.testing.assert_array_equal(balanced_subset(labels, 100, np.random.default_rng(0)), np.arange(12))


def test_captions_templates():
    for template in range(len(CAPTION_TEMPLATES)):
        text = caption(7, template)
        assert "seven" in text or "7" in text
    labels = np.repeat(np.arange(10), 20)
    captions = choose_captions(labels, np.random.default_rng(0))
    assert captions == choose_captions(labels, np.random.default_rng(0))
    assert len(set(captions)) > 30
    with pytest.raises(ValueError, match="digit 0-9, got 10"):
        caption(10, 0)


@pytest.mark.parametrize(
    ("seed", "limit", "message"), [(-1, None, "seed must be"), (0, 0, "limit must be"), (0, 2.5, "limit must be")]
)
def test_build_rejects_bad_arguments(tmp_path, seed, limit, message):
    with pytest.raises(ConfigError, match=message):
        DigitsRecipe().build(tmp_path, source=SOURCE_DIR, seed=seed, limit=limit)
    with pytest.raises(ConfigError, match=message):
        SklearnDigitsRecipe().build(tmp_path, seed=seed, limit=limit)


# ---------------------------------------------------------------------------
# digits: checking the source files
# ---------------------------------------------------------------------------


@needs_sources
def test_source_checksum_mismatch(tmp_path):
    source = _link_sources(tmp_path / "source")
    modified = source / MNIST_TEST.relative_path
    with np.load(SOURCE_DIR / MNIST_TEST.relative_path) as archive:
        images, labels = archive["images"].copy(), archive["labels"]
    images[0, 0, 0] = 1
    modified.unlink()
    np.savez_compressed(modified, images=images, labels=labels)
    with pytest.raises(ChecksumError) as caught:
        DigitsRecipe().build(tmp_path / "out", source=source, limit=10, progress=False)
    message = str(caught.value)
    assert str(modified) in message
    assert MNIST_TEST.sha256 in message
    assert _sha256(modified) in message
    assert "--fetch" in message
    assert not (tmp_path / "out" / "train.jsonl").exists()


@needs_sources
def test_source_missing_file(tmp_path):
    source = _link_sources(tmp_path / "source")
    (source / FSDD.relative_path).unlink()
    with pytest.raises(SourceNotFoundError) as caught:
        DigitsRecipe().build(tmp_path / "out", source=source, limit=10, progress=False)
    message = str(caught.value)
    assert str(source / FSDD.relative_path) in message
    assert FSDD.sha256 in message
    assert "--source" in message
    assert "--fetch" in message


def test_source_required(tmp_path):
    with pytest.raises(SourceError, match="needs its source files"):
        DigitsRecipe().build(tmp_path, source=None, fetch=False)
    with pytest.raises(SourceNotFoundError, match="source folder .* not found"):
        DigitsRecipe().build(tmp_path, source=tmp_path / "absent")


@needs_sources
def test_source_resaved_copy_accepted(tmp_path):
    # Other npz bytes around the same arrays pass through the arrays pin.
    copy = tmp_path / "mnist_test.npz"
    with np.load(SOURCE_DIR / MNIST_TEST.relative_path) as archive:
        np.savez(copy, **{name: archive[name] for name in archive.files})
    assert _sha256(copy) != MNIST_TEST.sha256
    check_source_file(copy, MNIST_TEST)


@needs_sources
def test_source_pins_match_published_files():
    for spec in DIGITS_SOURCE_FILES:
        path = SOURCE_DIR / spec.relative_path
        assert _sha256(path) == spec.sha256
        with np.load(path) as archive:
            assert arrays_sha256({name: archive[name] for name in archive.files}) == spec.arrays_sha256


def test_cache_folder_choice(tmp_path, monkeypatch):
    monkeypatch.delenv(digits.CACHE_ENV, raising=False)
    assert DigitsRecipe()._cache_folder(tmp_path) == tmp_path / ".sources"
    monkeypatch.setenv(digits.CACHE_ENV, str(tmp_path / "shared-cache"))
    assert DigitsRecipe()._cache_folder(tmp_path) == tmp_path / "shared-cache"
    assert DigitsRecipe(cache=tmp_path / "given")._cache_folder(tmp_path) == tmp_path / "given"


# ---------------------------------------------------------------------------
# digits: fetching the public originals (downloads served locally)
# ---------------------------------------------------------------------------


@needs_sources
def test_fetch_converts_originals(tmp_path, served_originals, monkeypatch):
    cache = tmp_path / "cache"
    output = DigitsRecipe(cache=cache).build(tmp_path / "out", fetch=True, seed=0, limit=LIMIT, progress=False)
    assert output.counts == {"train": LIMIT, "test": LIMIT}
    assert len(served_originals) == 8
    for spec in DIGITS_SOURCE_FILES:
        with np.load(cache / spec.relative_path) as archive:
            assert arrays_sha256({name: archive[name] for name in archive.files}) == spec.arrays_sha256
    expected = DigitsRecipe().build(tmp_path / "from-source", source=SOURCE_DIR, seed=0, limit=LIMIT, progress=False)
    assert _read_jsonl(output.manifests["test"]) == _read_jsonl(expected.manifests["test"])

    # A second build reuses the cache without downloading, and the cache works as --source.
    def no_download(url, path, **options):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(originals, "download", no_download)
    DigitsRecipe(cache=cache).build(tmp_path / "again", fetch=True, limit=10, progress=False)
    DigitsRecipe().build(tmp_path / "cache-as-source", source=cache, limit=10, progress=False)


@needs_sources
def test_fetch_only_missing_files(tmp_path, served_originals):
    source = _link_sources(tmp_path / "source")
    (source / MNIST_TRAIN.relative_path).unlink()
    DigitsRecipe(cache=tmp_path / "cache").build(tmp_path / "out", source=source, fetch=True, limit=10, progress=False)
    assert [url.rsplit("/", 1)[-1] for url in served_originals] == ["mnist_5k.csv.gz"]
    assert (tmp_path / "cache" / MNIST_TRAIN.relative_path).is_file()
    assert not (tmp_path / "cache" / FSDD.relative_path).exists()


@needs_sources
def test_fetch_download_checksum_mismatch(tmp_path, served_originals, original_files, monkeypatch):
    item = originals.ORIGINALS[MNIST_TRAIN.key].downloads[0]
    damaged = tmp_path / "damaged.csv.gz"
    damaged.write_bytes(original_files[item.filename].read_bytes()[:-10])
    monkeypatch.setitem(original_files, item.filename, damaged)
    with pytest.raises(ChecksumError) as caught:
        originals.fetch_source_file(MNIST_TRAIN, tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert item.url in message
    assert item.sha256 in message
    assert _sha256(damaged) in message
    assert "by hand" in message
    assert not (tmp_path / "cache" / "downloads" / item.filename).exists()


@needs_sources
def test_fetch_converted_arrays_mismatch(tmp_path, served_originals, original_files, sources, monkeypatch):
    labels = sources.mnist_test.labels.copy()
    labels[0] = (labels[0] + 1) % 10
    changed = _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 0x801)
    monkeypatch.setitem(original_files, "t10k-labels-idx1-ubyte.gz", changed)
    original = originals.ORIGINALS[MNIST_TEST.key]
    downloads = tuple(dataclasses.replace(item, sha256=None) for item in original.downloads)
    monkeypatch.setitem(originals.ORIGINALS, MNIST_TEST.key, dataclasses.replace(original, downloads=downloads))
    with pytest.raises(ChecksumError, match=f"do not match the pin: expected sha256 {MNIST_TEST.arrays_sha256}"):
        originals.fetch_source_file(MNIST_TEST, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / MNIST_TEST.relative_path).exists()


def test_fetch_offline(tmp_path, monkeypatch):
    def offline(request, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(originals.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as caught:
        DigitsRecipe(cache=tmp_path / "cache").build(tmp_path / "out", fetch=True, limit=10, progress=False)
    message = str(caught.value)
    item = originals.ORIGINALS[MNIST_TRAIN.key].downloads[0]
    assert item.url in message
    assert "name resolution" in message
    assert "by hand" in message
    assert MNIST_TRAIN.relative_path in message
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_download_file_url(tmp_path):
    served = tmp_path / "served.bin"
    served.write_bytes(os.urandom(200_000))
    target = originals.download(served.as_uri(), tmp_path / "downloads" / "copy.bin", progress=False)
    assert target.read_bytes() == served.read_bytes()
    with pytest.raises(DownloadError, match="download of file:.*missing.bin failed"):
        originals.download((tmp_path / "missing.bin").as_uri(), tmp_path / "downloads" / "missing.bin", progress=False)
    assert not (tmp_path / "downloads" / "missing.bin").exists()


def test_download_http_errors(tmp_path, local_server):
    with pytest.raises(DownloadError, match=r"download of http://127\.0\.0\.1:\d+/absent failed with HTTP 404"):
        originals.download(f"{local_server}/absent", tmp_path / "absent", progress=False)
    with pytest.raises(DownloadError, match=r"download of http://127\.0\.0\.1:\d+/short failed"):
        originals.download(f"{local_server}/short", tmp_path / "short", progress=False)
    assert not (tmp_path / "short").exists()
    with pytest.raises(DownloadError, match=r"download of http://127\.0\.0\.1:\d+/slow timed out after 0\.2 s"):
        originals.download(f"{local_server}/slow", tmp_path / "slow", timeout=0.2, progress=False)
    assert originals.download(f"{local_server}/ok", tmp_path / "ok", progress=False).read_bytes() == b"x" * 1000


def test_decompress_without_gzip(tmp_path, monkeypatch):
    monkeypatch.setattr(conversion.shutil, "which", lambda name: None)
    with pytest.raises(SourceError, match="'gzip' program was not found"):
        conversion.decompress_unix_z(tmp_path / "pendigits-orig.tra.Z")


def test_pendigits_parser_rejects_bad_line(tmp_path):
    text = '.SEGMENT DIGIT 0 ? "3"\n.COMMENT 3 1 1\n.PEN_DOWN\n  10 20\n  oops\n.PEN_UP\n'
    with pytest.raises(SourceError, match=r"line 5: expected 'x y' inside a stroke"):
        conversion.parse_pendigits(text, tmp_path / "file")


@pytest.fixture
def local_server():
    """Serve /ok (1,000 bytes), /short (closes before its Content-Length), /slow and 404 otherwise on 127.0.0.1."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/ok":
                self._reply(b"x" * 1000, 1000)
            elif self.path == "/short":
                self._reply(b"x" * 10, 1000)
            elif self.path == "/slow":
                time.sleep(1.0)
                self._reply(b"x", 1)
            else:
                self.send_error(404)

        def _reply(self, body, length):
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):
            pass  # keep test output clean

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.block_on_close = False  # do not wait for the /slow handler at shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------
# sklearn-digits
# ---------------------------------------------------------------------------


def test_sklearn_digits_build(sklearn_build):
    from sklearn.datasets import load_digits

    digits_data = load_digits()
    assert sklearn_build.counts == {"train": 40, "test": 40}
    assert json.loads(sklearn_build.config.read_text()) == SKLEARN_DIGITS_TRAIN_CONFIG
    assert RunConfig.from_file(sklearn_build.config).model.latent_dim == 16
    for split, path in sklearn_build.manifests.items():
        records = _read_jsonl(path)
        assert Counter(record["label"] for record in records) == {digit: 4 for digit in range(10)}
        for record in records:
            assert set(record) == {"id", "image", "text", "label", "sklearn_index"}
            with Image.open(sklearn_build.out / record["image"]) as image:
                assert image.mode == "L"
                assert image.size == (8, 8)
                pixels = np.asarray(image)
            source = digits_data.images[record["sklearn_index"]]
            np.testing.assert_array_equal(pixels, np.rint(source * 255 / 16).astype(np.uint8))
            assert pixels.max() <= 255
            assert record["label"] == int(digits_data.target[record["sklearn_index"]])
            assert NUMBER_WORDS[record["label"]] in record["text"] or str(record["label"]) in record["text"]


def test_sklearn_digits_full_split(tmp_path):
    output = SklearnDigitsRecipe().build(tmp_path, source=tmp_path / "ignored", seed=3, progress=False)
    assert output.counts == {"train": 1437, "test": 360}
    train = _read_jsonl(output.manifests["train"])
    test = _read_jsonl(output.manifests["test"])
    assert not {record["sklearn_index"] for record in train} & {record["sklearn_index"] for record in test}
    train_counts = Counter(record["label"] for record in train)
    test_counts = Counter(record["label"] for record in test)
    for digit in range(10):
        share = test_counts[digit] / (train_counts[digit] + test_counts[digit])
        assert abs(share - 0.2) < 0.01
    with Image.open(tmp_path / test[0]["image"]) as image:
        # White ink on black: the corners of an 8x8 digit are background.
        assert image.getpixel((0, 0)) == 0


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _link_sources(folder: Path) -> Path:
    """Make a source folder of symbolic links to the real files, which a test may then replace or delete."""
    for spec in DIGITS_SOURCE_FILES:
        link = folder / spec.relative_path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(SOURCE_DIR / spec.relative_path)
    return folder


def _write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0))
    return path


def _write_mnist_csv(path: Path, mnist) -> Path:
    table = np.concatenate([mnist.images.reshape(len(mnist.images), -1), mnist.labels[:, None]], axis=1)  # (N, 785)
    buffer = io.StringIO()
    np.savetxt(buffer, table, fmt="%d", delimiter=",")
    path.write_bytes(gzip.compress(buffer.getvalue().encode("ascii"), mtime=0))
    return path


def _write_fsdd_zip(path: Path, fsdd) -> Path:
    """Write every clip as a wav under the folder layout of a GitHub archive of the FSDD repository."""
    prefix = f"free-spoken-digit-dataset-{originals.FSDD_COMMIT}"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/README.md", "Free Spoken Digit Dataset\n")
        for row, filename in enumerate(fsdd.filenames):
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as writer:
                writer.setnchannels(1)
                writer.setsampwidth(2)
                writer.setframerate(8000)
                writer.writeframes(fsdd.clip(row).astype("<i2").tobytes())
            archive.writestr(f"{prefix}/recordings/{filename}", buffer.getvalue())
    return path
