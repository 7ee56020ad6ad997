import json
import math
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from polyfuse import MultimodalVAE, encode_manifest, read_manifest
from polyfuse.errors import CheckpointError, NonFiniteLossError
from polyfuse.training import RunConfig, train
from polyfuse.training.checkpoint import read_checkpoint_config
from polyfuse.persistence import load_tensors

from conftest import subprocess_env, tiny_run_config, write_tiny_dataset

KILL_SCRIPT = """
import os, signal, sys
import polyfuse.persistence as persistence
from polyfuse.training import RunConfig, train

manifest, out, config, kill_step, during_save = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
run_config = RunConfig.from_file(config)

if during_save:
    # Die in the middle of writing the checkpoint file that follows kill_step.
    original = persistence.atomic_write
    def dying_write(path, write):
        def half_written(temporary):
            write(temporary)
            with open(temporary, "r+b") as handle:
                handle.truncate(temporary.stat().st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        if "checkpoints" in str(path) and state["step"] >= kill_step:
            return original(path, half_written)
        return original(path, write)
    persistence.atomic_write = dying_write

state = {"step": 0}
def on_step(training_state, values):
    state["step"] = training_state.step
    if not during_save and training_state.step == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)

train(manifest, out, run_config, progress=False, on_step=on_step)
"""


def run_until_killed(tmp_path, manifest, out, config, kill_step, during_save):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    args = [sys.executable, str(script), str(manifest), str(out), str(config), str(kill_step), "1" if during_save else "0"]
    completed = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == -signal.SIGKILL, completed.stderr


def checkpoint_step(out):
    from safetensors import safe_open

    with safe_open(str(out / "checkpoints" / "last.safetensors"), framework="pt") as handle:
        return json.loads(handle.metadata()["state"])["step"]


@pytest.fixture
def killable_run(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=40)
    config = tmp_path / "config.json"
    # 40 records / batch 8 = 5 steps per epoch, 15 steps in all, checkpoints every 2 steps.
    config.write_text(json.dumps(tiny_run_config(epochs=3, batch_size=8, checkpoint_every=2)))
    reference = train(manifest, tmp_path / "reference", RunConfig.from_file(config), progress=False)
    return manifest, config, reference


@pytest.mark.parametrize("during_save", [False, True], ids=["between-steps", "while-saving"])
def test_sigkill_resumes_to_same_weights(tmp_path, killable_run, during_save):
    manifest, config, reference = killable_run
    out = tmp_path / "killed"
    run_until_killed(tmp_path, manifest, out, config, kill_step=7, during_save=during_save)

    # The checkpoint on disk is whole and no more than one interval behind.
    assert checkpoint_step(out) == 6
    load_tensors(out / "checkpoints" / "last.safetensors")
    assert not (out / "config.json").exists()

    resumed = train(manifest, out, RunConfig.from_file(config), progress=False)
    assert resumed.resumed_from_step == 6
    assert resumed.steps == reference.steps == 15
    expected = reference.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=f"parameter {name} differs")


def test_resume_with_other_config_is_refused(tmp_path, killable_run):
    manifest, config, _ = killable_run
    other = RunConfig.from_dict(tiny_run_config(epochs=3, batch_size=8, checkpoint_every=2, learning_rate=0.01))
    with pytest.raises(CheckpointError, match="another config"):
        train(manifest, tmp_path / "reference", other, progress=False)
    # More epochs and another thread count change how long and how a run goes, not what it computes.
    extended = RunConfig.from_dict(tiny_run_config(epochs=4, batch_size=8, checkpoint_every=2, num_threads=1))
    output = train(manifest, tmp_path / "reference", extended, progress=False)
    assert output.resumed_from_step == 15
    assert output.steps == 20


def test_missing_modalities_train_with_finite_loss(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=48, seed=5, missing=0.45)
    records = read_manifest(manifest).records
    assert any("image" not in r.values and "sensor" not in r.values for r in records)
    assert any("image" in r.values and "sensor" in r.values for r in records)
    losses = []
    output = train(
        manifest, tmp_path / "model", RunConfig.from_dict(tiny_run_config(epochs=3)), progress=False,
        on_step=lambda state, values: losses.append(values),
    )
    assert len(losses) == output.steps == 18
    assert all(math.isfinite(v) for values in losses for v in values.values())

    latents = encode_manifest(MultimodalVAE.from_pretrained(tmp_path / "model"), manifest, progress=False)
    assert np.isfinite(latents.mean).all()
    expected_presence = [[("image" in r.values), ("sensor" in r.values)] for r in records]
    assert latents.present.tolist() == expected_presence
    empty_rows = ~latents.present.any(axis=1)
    np.testing.assert_allclose(latents.mean[empty_rows], 0.0)


def test_non_finite_loss_names_term_and_modality(tmp_path, monkeypatch):
    manifest = write_tiny_dataset(tmp_path / "data", count=16)
    from polyfuse_sensor.networks import ConvSeriesDecoder

    calls = {"count": 0}
    original = ConvSeriesDecoder.log_likelihood

    def poisoned(self, latents, batch):
        calls["count"] += 1
        values = original(self, latents, batch)
        return values * float("nan") if calls["count"] >= 3 else values

    monkeypatch.setattr(ConvSeriesDecoder, "log_likelihood", poisoned)
    with pytest.raises(NonFiniteLossError) as raised:
        train(manifest, tmp_path / "model", RunConfig.from_dict(tiny_run_config()), progress=False)
    message = str(raised.value)
    assert "loss term 'nll/sensor' (modality 'sensor') is nan at step 3" in message
    assert "check the 'sensor' inputs" in message
    assert read_checkpoint_config(tmp_path / "model" / "checkpoints" / "last.safetensors")["training"]["epochs"] == 2


def test_training_is_reproducible_with_seed(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=16)
    config = RunConfig.from_dict(tiny_run_config(epochs=1))
    first = train(manifest, tmp_path / "a", config, progress=False).model.state_dict()
    second = train(manifest, tmp_path / "b", config, progress=False).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_rerun_of_finished_run_keeps_training_time(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=24)
    run_config = RunConfig.from_dict(tiny_run_config(epochs=2))
    first = train(manifest, tmp_path / "model", run_config, progress=False)
    summary = json.loads((tmp_path / "model" / "config.json").read_text())["training_summary"]
    assert first.total_seconds > 0
    assert summary["seconds"] == pytest.approx(first.total_seconds, abs=1e-3)
    assert summary["samples_per_second"] > 0

    again = train(manifest, tmp_path / "model", run_config, progress=False)
    rerun_summary = json.loads((tmp_path / "model" / "config.json").read_text())["training_summary"]
    assert again.resumed_from_step == first.steps
    assert again.total_seconds >= first.total_seconds
    assert rerun_summary["samples_per_second"] == pytest.approx(summary["samples_per_second"], rel=0.5)
