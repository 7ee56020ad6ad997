import json
import subprocess

import numpy as np
import pytest

from conftest import polyfuse_command, subprocess_env, tiny_run_config, write_tiny_dataset


def run_cli(*args, check=True, timeout=300, **env):
    completed = subprocess.run([*polyfuse_command(), *map(str, args)], capture_output=True, text=True, env=subprocess_env(**env), timeout=timeout)
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


def test_help_does_not_import_torch():
    completed = subprocess.run([*polyfuse_command()[:1], "-X", "importtime", "-m", "polyfuse", "--help"], capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert completed.returncode == 0
    imported = {line.split("|")[-1].strip() for line in completed.stderr.splitlines() if "|" in line}
    assert "torch" not in imported
    assert "numpy" not in imported
    for command in ("train", "encode", "datasets", "plugins"):
        assert command in completed.stdout


@pytest.mark.parametrize("command", [["train"], ["encode"], ["datasets", "build"], ["plugins"]])
def test_every_option_is_documented(command):
    completed = run_cli(*command, "--help")
    lines = completed.stdout.splitlines()
    options = [line for line in lines if line.strip().startswith("--") or line.strip().startswith("-")]
    assert options
    assert "Show this message and exit." in completed.stdout
    for index, line in enumerate(lines):
        if line.strip().startswith("--") and len(line.split("  ")) == 1 and index + 1 < len(lines):
            assert lines[index + 1].strip(), f"option without help: {line}"


def test_train_then_encode(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=12)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_run_config(epochs=1)))
    trained = run_cli("train", "--manifest", manifest, "--config", config, "--out", tmp_path / "model", "--seed", 3)
    assert "Saved model with fields image, sensor" in trained.stdout
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["run_config"]["training"]["seed"] == 3

    run_cli("encode", "--model", tmp_path / "model", "--manifest", manifest, "--out", tmp_path / "both.npz")
    run_cli("encode", "--model", tmp_path / "model", "--manifest", manifest, "--out", tmp_path / "image.npz", "--modalities", "image")
    with np.load(tmp_path / "both.npz") as both, np.load(tmp_path / "image.npz") as image:
        assert both["mean"].shape == (12, 4)
        assert both["fields"].tolist() == ["image", "sensor"]
        assert image["fields"].tolist() == ["image"]
        assert both["labels"].tolist()[:3] == ["0", "1", "2"]
        assert not np.allclose(both["mean"], image["mean"])


def test_train_infers_fields_from_manifest(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=8)
    config = tmp_path / "config.json"
    run = tiny_run_config(epochs=1)
    del run["modalities"]["sensor"]
    config.write_text(json.dumps(run))
    run_cli("train", "--manifest", manifest, "--config", config, "--out", tmp_path / "model", "--modalities", "image")
    assert list(json.loads((tmp_path / "model" / "config.json").read_text())["modalities"]) == ["image"]


def test_errors_are_one_line_without_traceback(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"id": 1, "image": "missing.png"}\n')
    completed = run_cli("train", "--manifest", manifest, "--out", tmp_path / "model", check=False)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert f"Error: {manifest} line 1, field 'image': file not found" in completed.stderr
    assert "--skip-invalid" in completed.stderr


def test_skip_invalid_reports_each_record(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=8)
    (tmp_path / "data" / "images" / "3.png").unlink()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_run_config(epochs=1)))
    completed = run_cli("train", "--manifest", manifest, "--config", config, "--out", tmp_path / "model", "--skip-invalid")
    assert "skipped r3:" in completed.stderr
    assert "1 records skipped" in completed.stdout


def test_bad_config_names_file_and_field(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=4)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"training": {"epoch": 3}}))
    completed = run_cli("train", "--manifest", manifest, "--config", config, "--out", tmp_path / "model", check=False)
    assert completed.returncode == 1
    assert f"{config} 'training': unknown TrainingConfig field(s) epoch" in completed.stderr


def test_datasets_list_json():
    listing = json.loads(run_cli("datasets", "list", "--json").stdout)
    names = {row["name"]: row for row in listing["datasets"]}
    assert names["digits"]["needs_source"] is True
    assert names["sklearn-digits"]["plugin"] == "datasets"


def test_digits_without_source_is_usage_error(tmp_path):
    completed = run_cli("datasets", "build", "digits", "--out", tmp_path, check=False)
    assert completed.returncode == 2
    assert "needs --source DIR" in completed.stderr


def test_recipes_without_fetch_do_not_offer_it(tmp_path):
    listing = json.loads(run_cli("datasets", "list", "--json").stdout)
    names = {row["name"]: row for row in listing["datasets"]}
    assert names["digits"]["can_fetch"] is True
    assert names["shoulder"]["can_fetch"] is False
    completed = run_cli("datasets", "build", "shoulder", "--out", tmp_path, "--fetch", check=False)
    assert completed.returncode == 2
    assert "needs --source DIR (its source files)" in completed.stderr
    assert "or --fetch" not in completed.stderr


def test_cli_reference_is_current():
    from polyfuse.cli.reference import render_reference

    from conftest import REPO

    written = (REPO / "docs" / "cli.md").read_text()
    assert written == render_reference(), "docs/cli.md is out of date: run python -m polyfuse.cli.reference > docs/cli.md"


def test_demo_headline_lists_main_figures(tmp_path):
    from polyfuse.cli.demo import headline

    results = {
        "classification": {"image+text": {"probe": 0.99}, "image": {"probe": 0.9}, "text": {"probe": 1.0}},
        "coherence": {"generators": {"diffusion": {"pairs": {"image -> text": 0.95, "text -> image": 0.9, "image+text -> image": 1.0}, "joint": 0.8}}},
        "retrieval": {"pairs": [
            {"query": ["image"], "target": "text", "map_at_10": 0.97},
            {"query": ["image"], "target": "image", "map_at_10": 0.99},
        ]},
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"results": results}))
    lines = headline(path)
    assert lines[0] == "Classification from the fused latent (image+text), linear probe: 0.990"
    assert lines[1] == "Coherence of generator 'diffusion' from one modality: image -> text 0.95, text -> image 0.90; joint 0.80"
    assert lines[2] == "Cross-modal retrieval mAP@10: image -> text 0.970"
