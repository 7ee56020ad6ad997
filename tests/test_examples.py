"""The runnable programs in examples/, run as a user runs them: scripts on real files, with tiny settings."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, SHARED_DATA, polyfuse_command, subprocess_env
from generation_fixtures import TINY_DIFFUSION, tiny_multimodal_config, write_tiny_multimodal_dataset

EXAMPLES = REPO / "examples"
CREATIVE_DEMO = EXAMPLES / "creative_tool" / "demo.py"
MEDIA_SEARCH = EXAMPLES / "media_search" / "media_search.py"
SHOULDER = EXAMPLES / "shoulder_analytics" / "shoulder_analytics.py"
SHOULDER_SOURCE = SHARED_DATA / "shoulder_watch" / "shoulder_watch.npz"


def run_example(script: Path, *args, expect: int = 0) -> subprocess.CompletedProcess:
    """Run ``script`` with the test interpreter, one torch thread and no progress bars, and check its exit status."""
    completed = subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=600, env=subprocess_env()
    )
    assert completed.returncode == expect, f"exit status {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    return completed


def run_cli(*args) -> None:
    completed = subprocess.run([*polyfuse_command(), *map(str, args)], capture_output=True, text=True, timeout=600, env=subprocess_env())
    assert completed.returncode == 0, completed.stderr


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Image, audio, sensor and caption files of 24 records in 3 classes, with their manifest."""
    return write_tiny_multimodal_dataset(tmp_path_factory.mktemp("tiny-data"), count=24)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_data) -> Path:
    """A tiny model of image, audio, sensor and text, trained by 'polyfuse train', with no generator."""
    folder = tmp_path_factory.mktemp("tiny-model")
    config = folder / "run.json"
    config.write_text(json.dumps(tiny_multimodal_config(epochs=3)))
    run_cli("train", "--manifest", tiny_data, "--config", config, "--out", folder / "model", "--threads", "1", "-q")
    return folder / "model"


@pytest.fixture(scope="module")
def tiny_model_with_diffusion(tmp_path_factory, tiny_model, tiny_data) -> Path:
    """A copy of the tiny model with a tiny diffusion generator saved beside it."""
    folder = tmp_path_factory.mktemp("tiny-diffusion") / "model"
    shutil.copytree(tiny_model, folder)
    config = folder.parent / "diffusion.json"
    config.write_text(json.dumps(TINY_DIFFUSION))
    run_cli(
        "train-generator", "--model", folder, "--generator", "diffusion", "--manifest", tiny_data,
        "--config", config, "--epochs", "3", "--threads", "1", "-q",
    )
    return folder


# -- creative_tool -------------------------------------------------------------


@pytest.fixture(scope="module")
def creative_demo(tmp_path_factory):
    """The creative-tool demo run from scratch: it builds sklearn-digits and trains both models itself."""
    out = tmp_path_factory.mktemp("creative")
    completed = run_example(
        CREATIVE_DEMO, "--out", out, "--epochs", "2", "--generator-epochs", "5", "--limit", "20",
        "--steps", "5", "--samples", "2", "--cancel-after", "2", "--threads", "1",
    )
    return out, completed, json.loads((out / "creative-tool.json").read_text())


def test_creative_demo_writes_images(creative_demo):
    out, _, summary = creative_demo
    files = [Path(name) for name in summary["image_from_caption"]["files"]]
    assert len(files) == 2
    for path in files:
        assert path.parent == out / "image-from-caption" / "image"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == (16, 16)  # the sklearn-digits recipe's image size
    record = json.loads((out / "image-from-caption" / "generation.json").read_text())
    assert record["inputs"] == {"text": "a handwritten seven"}
    assert record["steps"] == 5
    assert record["seed"] == 0


def test_creative_demo_reports_cancellation(creative_demo):
    _, completed, summary = creative_demo
    assert summary["cancelled_request"] == {"cancelled": True, "completed_steps": 2, "total_steps": 5}
    assert "Stop pressed: the request ended after step 2 of 5" in completed.stdout
    assert "request the user stops: [########............] 2/5 cancelled" in completed.stdout


def test_creative_demo_captions_first_image(creative_demo):
    _, _, summary = creative_demo
    assert isinstance(summary["caption_of_first_image"], str)
    assert summary["image_from_caption"]["completed_steps"] == 5


def test_creative_demo_images_from_sound(tmp_path, tiny_model_with_diffusion, tiny_data):
    clip = tiny_data.parent / "audio" / "0.wav"
    completed = run_example(
        CREATIVE_DEMO, "--out", tmp_path, "--model", tiny_model_with_diffusion, "--caption", "zero", "--audio", clip,
        "--steps", "5", "--samples", "3", "--cancel-after", "1",
    )
    assert "Training" not in completed.stdout
    summary = json.loads((tmp_path / "creative-tool.json").read_text())
    assert len(summary["image_from_audio"]["files"]) == 3
    assert all(Path(name).is_file() for name in summary["image_from_audio"]["files"])
    assert summary["cancelled_request"]["completed_steps"] == 1


def test_creative_demo_needs_saved_generator(tmp_path, tiny_model):
    completed = run_example(CREATIVE_DEMO, "--out", tmp_path, "--model", tiny_model, "--steps", "5", expect=1)
    assert "no generator 'diffusion' is saved" in completed.stderr
    assert "polyfuse train-generator" in completed.stderr


def test_creative_demo_rejects_late_cancel(tmp_path):
    completed = run_example(CREATIVE_DEMO, "--out", tmp_path, "--steps", "5", "--cancel-after", "5", expect=2)
    assert "--cancel-after must be below --steps (5)" in completed.stderr


def load_studio_module():
    spec = importlib.util.spec_from_file_location("creative_tool_studio", EXAMPLES / "creative_tool" / "studio.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolves the module's string annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def studio(tiny_model_with_diffusion):
    return load_studio_module().SoundAndImageStudio.load(tiny_model_with_diffusion, num_inference_steps=4)


def test_studio_cancel_before_start(studio):
    cancel = threading.Event()
    cancel.set()
    steps = []
    creation = studio.image_from(text="one", cancel=cancel, on_progress=lambda step, total: steps.append(step))
    assert creation.cancelled
    assert creation.completed_steps == 0
    assert creation.values == []
    assert steps == []


def test_studio_cancel_during_sampling(studio):
    cancel = threading.Event()
    steps = []

    def press_stop_at_step_three(step, total_steps):
        steps.append((step, total_steps))
        if step == 3:
            cancel.set()

    creation = studio.image_from(text="one", seed=1, cancel=cancel, on_progress=press_stop_at_step_three)
    assert creation.cancelled
    assert (creation.completed_steps, creation.total_steps) == (3, 4)
    assert steps == [(1, 4), (2, 4), (3, 4)]
    with pytest.raises(ValueError, match="was cancelled after step 3, so it has no samples to save"):
        studio.save(creation, Path("unused"))


def test_studio_generates_each_modality(studio, tiny_data, tmp_path):
    image = studio.image_from(text="two", audio=tiny_data.parent / "audio" / "2.wav", num_samples=2, seed=3)
    assert not image.cancelled
    assert [value.size for value in image.values] == [(16, 16), (16, 16)]
    assert image.seed == 3
    sound = studio.sound_from(image=image.values[0], seed=3)
    assert sound.values[0].sample_rate == 4000
    caption = studio.caption_from(audio=tiny_data.parent / "audio" / "2.wav", seed=3)
    assert isinstance(caption.values[0], str)
    written = studio.save(sound, tmp_path)
    assert [path.suffix for path in written.files["audio"]] == [".wav"]


def test_studio_same_seed_same_image(studio):
    first = studio.image_from(text="zero", seed=7)
    second = studio.image_from(text="zero", seed=7)
    assert np.array_equal(np.asarray(first.values[0]), np.asarray(second.values[0]))


def test_studio_rejects_bad_requests(studio):
    with pytest.raises(ValueError, match="give at least one of text, audio to generate image from"):
        studio.image_from()
    with pytest.raises(ValueError, match="this model cannot generate 'video'"):
        studio.create("video", {"text": "zero"})
    with pytest.raises(ValueError, match="no field\\(s\\) depth to condition on"):
        studio.create("image", {"depth": "scan.npy"})


# -- media_search --------------------------------------------------------------


def write_media_folder(folder: Path, tiny_data: Path) -> Path:
    """Copy tiny records into a media folder: full records, single files, a CSV series, a hidden file and a nested folder."""
    source = tiny_data.parent
    (folder / "clips").mkdir(parents=True)
    for index in range(6):
        shutil.copy(source / "images" / f"{index}.png", folder / "clips" / f"r{index}.png")
        shutil.copy(source / "audio" / f"{index}.wav", folder / "clips" / f"r{index}.wav")
        (folder / "clips" / f"r{index}.txt").write_text(("zero", "one", "two")[index % 3] + "\n", encoding="utf-8")
    shutil.copy(source / "images" / "6.png", folder / "lonely.png")
    shutil.copy(source / "audio" / "7.wav", folder / "voice.wav")
    np.save(folder / "walk.npy", np.load(source / "sensor" / "8.npy"))
    series = np.load(source / "sensor" / "9.npy")
    rows = "".join(f"{step / 10:.1f},{x:.5f},{y:.5f},{z:.5f}\n" for step, (x, y, z) in enumerate(series))
    (folder / "run.csv").write_text("time,x,y,z\n" + rows, encoding="utf-8")
    (folder / "note.txt").write_text("two\n", encoding="utf-8")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    return folder


@pytest.fixture(scope="module")
def media_index(tmp_path_factory, tiny_model, tiny_data):
    """A media folder with one unsupported file, and the index built from it with --skip-unsupported."""
    folder = tmp_path_factory.mktemp("media")
    media = write_media_folder(folder / "media", tiny_data)
    (media / "report.docx").write_bytes(b"PK\x03\x04")
    completed = run_example(MEDIA_SEARCH, "--threads", "1", "index", "--model", tiny_model, "--media", media, "--out", folder / "index", "--skip-unsupported")
    return media, folder / "index", completed


def search(index: Path, *args) -> dict:
    completed = run_example(MEDIA_SEARCH, "--threads", "1", "search", "--index", index, "--json", *args)
    return json.loads(completed.stdout)


def test_media_index_groups_files_by_stem(media_index):
    media, index, completed = media_index
    records = {record["id"]: record for record in map(json.loads, (index / "media.jsonl").read_text().splitlines())}
    assert sorted(records) == [*(f"clips/r{i}" for i in range(6)), "lonely", "note", "run", "voice", "walk"]
    full = records["clips/r0"]
    assert full["image"] == str(media / "clips" / "r0.png")
    assert full["audio"] == str(media / "clips" / "r0.wav")
    assert full["text"] == "zero"
    assert sorted(full["files"]) == ["clips/r0.png", "clips/r0.txt", "clips/r0.wav"]
    assert set(records["run"]) == {"id", "sensor", "files"}
    assert records["note"]["text"] == "two"
    assert "Vectors per target: image 7, audio 7, sensor 2, text 7, fused 11" in completed.stdout
    assert f"left out {media / 'report.docx'}: unsupported file type '.docx'" in completed.stdout


def test_media_index_rejects_unsupported_file(tmp_path, tiny_model, tiny_data):
    media = write_media_folder(tmp_path / "media", tiny_data)
    (media / "movie.mp4").write_bytes(b"\x00")
    completed = run_example(MEDIA_SEARCH, "index", "--model", tiny_model, "--media", media, "--out", tmp_path / "index", expect=1)
    assert f"error: {media / 'movie.mp4'}: unsupported file type '.mp4'; supported suffixes are" in completed.stderr
    assert "Move the file out of" in completed.stderr
    assert "or pass --skip-unsupported to leave such files out" in completed.stderr
    assert not (tmp_path / "index" / "index.json").exists()


def test_media_index_rejects_two_images_per_stem(tmp_path, tiny_model, tiny_data):
    media = write_media_folder(tmp_path / "media", tiny_data)
    Image.open(media / "lonely.png").convert("RGB").save(media / "lonely.jpg")
    completed = run_example(MEDIA_SEARCH, "index", "--model", tiny_model, "--media", media, "--out", tmp_path / "index", expect=1)
    assert "are both image files of the record 'lonely'" in completed.stderr
    assert "rename one" in completed.stderr


def test_media_search_finds_query_file_first(media_index):
    media, index, _ = media_index
    for query, target, expected in (
        (media / "clips" / "r3.png", "image", "clips/r3"),
        (media / "voice.wav", "audio", "voice"),
        (media / "run.csv", "sensor", "run"),
    ):
        result = search(index, "--query", query, "--target", target, "-k", "3")
        assert result["hits"][0]["id"] == expected, query
        assert result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_media_search_across_modalities(media_index):
    media, index, _ = media_index
    result = search(index, "--query", media / "clips" / "r1.wav", "--query", media / "walk.npy", "--target", "image", "-k", "4")
    assert result["query"] == ["audio", "sensor"]
    assert len(result["hits"]) == 4
    assert all(hit["path"].endswith(".png") for hit in result["hits"])
    captions = search(index, "--text", "two", "--target", "text", "-k", "20")
    assert len(captions["hits"]) == 7  # every record with a caption, fewer than k
    assert {hit["values"]["text"] for hit in captions["hits"]} == {"zero", "one", "two"}


def test_media_search_rejects_bad_queries(media_index):
    media, index, _ = media_index
    unknown = run_example(MEDIA_SEARCH, "search", "--index", index, "--query", media / "walk.npy", "--target", "video", expect=1)
    assert "--target 'video' is not in the index; its targets are image, audio, sensor, text, fused" in unknown.stderr
    unsupported = run_example(MEDIA_SEARCH, "search", "--index", index, "--query", media / "report.docx", "--target", "image", expect=1)
    assert "cannot tell which of the model's modalities (audio, image, sensor, text) this file is" in unsupported.stderr


def test_media_add_indexes_new_and_changed(tmp_path, tiny_model, tiny_data):
    media = write_media_folder(tmp_path / "media", tiny_data)
    index = tmp_path / "index"
    run_example(MEDIA_SEARCH, "--threads", "1", "index", "--model", tiny_model, "--media", media, "--out", index)

    # A new record, a sound joining the image-only record "lonely", and one record deleted.
    shutil.copy(tiny_data.parent / "images" / "10.png", media / "fresh.png")
    shutil.copy(tiny_data.parent / "audio" / "6.wav", media / "lonely.wav")
    (media / "note.txt").unlink()
    added = run_example(MEDIA_SEARCH, "--threads", "1", "add", "--index", index, "--media", media, "--remove-missing")
    assert "Added 1, updated 1, unchanged 9 records" in added.stdout
    assert "1 indexed records have no files" in added.stdout
    assert search(index, "--query", media / "fresh.png", "--target", "image", "-k", "1")["hits"][0]["id"] == "fresh"
    lonely = search(index, "--query", media / "lonely.wav", "--target", "audio", "-k", "1")["hits"][0]
    assert lonely["id"] == "lonely"
    assert lonely["paths"] == {"image": str(media / "lonely.png"), "audio": str(media / "lonely.wav")}
    texts = search(index, "--text", "two", "--target", "text", "-k", "20")["hits"]
    assert "note" not in {hit["id"] for hit in texts}

    again = run_example(MEDIA_SEARCH, "--threads", "1", "add", "--index", index, "--media", media)
    assert "Added 0, updated 0, unchanged 11 records" in again.stdout


# -- shoulder_analytics --------------------------------------------------------


@pytest.mark.skipif(not SHOULDER_SOURCE.is_file(), reason=f"needs the shoulder_watch data set at {SHOULDER_SOURCE}")
def test_shoulder_analytics_on_real_data(tmp_path):
    completed = run_example(
        SHOULDER, "--source", SHARED_DATA, "--out", tmp_path, "--limit", "70", "--epochs", "5", "--threads", "1", "--top", "4"
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["data"] == {
        "train_windows": 70, "test_windows": 70,
        "exercises": {
            "0": "Pendulum", "1": "Abduction", "2": "Forward elevation", "3": "Internal rotation with resistance band",
            "4": "External rotation with resistance band", "5": "Lower trapezius row with resistance band",
            "6": "Bent over row with 3 lb dumbbell",
        },
    }

    # Subject-independent: the probe is scored on subjects it never saw.
    classification = summary["classification"]
    assert classification["train_subjects"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert classification["test_subjects"] == [9, 10]
    assert classification["chance"] == pytest.approx(1 / 7)
    assert classification["probe_accuracy"] > classification["chance"]
    assert classification["knn_accuracy"] > classification["chance"]
    assert len(classification["per_exercise"]) == 7

    retrieval = summary["retrieval"]
    assert retrieval["captions"]["queries"] == 70
    assert 0.0 <= retrieval["captions"]["map_at_10"] <= 1.0
    assert set(retrieval["captions"]["recall"]) == {"1", "5", "10"}
    assert len(retrieval["per_exercise_query"]) == 7
    assert retrieval["query"]["text"] == "abduction"
    assert len(retrieval["query"]["hits"]) == 4

    faults = summary["robustness"]
    assert faults["clean"] == pytest.approx(classification["probe_accuracy"])
    assert list(faults["zeroed_channel"]) == ["ax", "ay", "az", "wx", "wy", "wz"]
    assert list(faults["noise"]) == ["0.1", "0.3", "1"]
    assert "linear probe accuracy" in completed.stdout
    assert "Recordings that look like 'abduction':" in completed.stdout


def test_shoulder_analytics_names_missing_source(tmp_path):
    completed = run_example(SHOULDER, "--source", tmp_path, "--out", tmp_path / "out", "--epochs", "1", expect=1)
    assert "shoulder_watch" in completed.stderr
