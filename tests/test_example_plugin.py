"""The third-party example plugin, installed with pip like any other, trains next to the built-ins."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, polyfuse_command, subprocess_env, tiny_run_config, write_tiny_dataset

EXAMPLE = REPO / "examples" / "tabular_plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
        check=True, timeout=300, capture_output=True,
    )
    return target


def test_example_plugin_is_discovered(installed_example):
    completed = subprocess.run(
        [*polyfuse_command(), "plugins", "--json"], capture_output=True, text=True, timeout=120,
        env=subprocess_env(PYTHONPATH=str(installed_example)),
    )
    assert completed.returncode == 0, completed.stderr
    plugins = {p["name"]: p for p in json.loads(completed.stdout)["plugins"]}
    assert plugins["tabular"]["distribution"] == "polyfuse-tabular"
    assert plugins["tabular"]["version"] == "0.1.0"
    assert plugins["tabular"]["status"] == "loaded"
    assert plugins["tabular"]["registered"] == {"modalities": ["tabular"]}


def test_example_plugin_trains_with_built_ins(installed_example, tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=24)
    rng = np.random.default_rng(0)
    lines = []
    for line in manifest.read_text().splitlines():
        record = json.loads(line)
        features = rng.normal(record["label"], 0.3, 4)
        if rng.random() < 0.2:
            features[1] = np.nan  # a missing entry, masked out of the likelihood
        record["tabular"] = [None if np.isnan(v) else float(v) for v in features]
        if rng.random() < 0.2:
            del record["tabular"]
        lines.append(json.dumps(record).replace("null", "NaN"))
    manifest.write_text("\n".join(lines) + "\n")

    config = tiny_run_config(fields=("image", "sensor"), epochs=2)
    config["modalities"]["tabular"] = {"features": 4, "hidden": 16, "feature_dim": 16}
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    env = subprocess_env(PYTHONPATH=str(installed_example))
    training = subprocess.run(
        [*polyfuse_command(), "train", "--manifest", str(manifest), "--config", str(config_path), "--out", str(tmp_path / "model")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert training.returncode == 0, training.stderr
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["modalities"]["tabular"]["distribution"] == "polyfuse-tabular"

    encoding = subprocess.run(
        [*polyfuse_command(), "encode", "--model", str(tmp_path / "model"), "--manifest", str(manifest), "--out", str(tmp_path / "z.npz"), "--modalities", "tabular"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert encoding.returncode == 0, encoding.stderr
    with np.load(tmp_path / "z.npz") as latents:
        assert latents["mean_tabular"].shape == (24, 4)
        assert np.isfinite(latents["mean"]).all()
