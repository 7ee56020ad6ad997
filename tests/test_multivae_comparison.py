"""Smoke test of benchmarks/multivae_comparison.py: its core functions on a tiny real digits build, one epoch each."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from polyfuse.errors import ConfigError
from polyfuse.evaluation.coherence import conditional_coherence as polyfuse_conditional_coherence
from polyfuse.evaluation.coherence import joint_coherence as polyfuse_joint_coherence

from conftest import REPO, SHARED_DATA, polyfuse_command, subprocess_env

RECORDS = 40  # per split: four of each digit
# Tests that use the data fixture are marked slow: building the set, nine one-epoch trainings
# and Griffin-Lim decoding take minutes on two cores.


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("multivae_comparison", REPO / "benchmarks" / "multivae_comparison.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def data(bench, tmp_path_factory):
    pytest.importorskip("multivae", reason="MultiVae is not installed; pip install -e '.[benchmark]' installs it")
    if not (SHARED_DATA / "fsdd").is_dir():
        pytest.skip("real data sets not found beside the checkout")
    folder = tmp_path_factory.mktemp("digits") / "data"
    command = [*polyfuse_command(), "datasets", "build", "digits", "--source", str(SHARED_DATA), "--out", str(folder), "--limit", str(RECORDS), "-q"]
    subprocess.run(command, check=True, capture_output=True, env=subprocess_env(), timeout=600)
    return bench.prepare_data(folder)


@pytest.fixture(scope="module")
def config(bench):
    return bench.ComparisonConfig(epochs=1, threads=1, snapshot_epochs=(1,), throughput_epochs=1, classifier_epochs=1, joint_samples=12, generator_epochs=1)


@pytest.fixture(scope="module")
def judges(bench, data, config):
    return bench.train_judges(data, config)[0]


@pytest.mark.slow
def test_multivae_inputs_have_default_network_shapes(data):
    shapes = {name: tuple(values.shape) for name, values in data.train.tensors.items()}
    assert shapes == {"image": (RECORDS, 1, 28, 28), "audio": (RECORDS, 1, 40, 63), "sensor": (RECORDS, 3, 64)}
    for name, values in data.train.tensors.items():
        assert values.min() >= 0.0, name
        assert values.max() <= 1.0, name


@pytest.mark.slow
def test_round_trip_restores_image_and_sensor(bench, data):
    generator = torch.Generator().manual_seed(0)
    for name in ("image", "sensor"):
        original = data.test.dataset.batch(range(RECORDS), data.modalities)[name]
        restored = data.space.to_polyfuse(name, data.test.tensors[name], generator)
        assert torch.allclose(restored.data, original.data, atol=1e-5), name


@pytest.mark.slow
def test_round_trip_keeps_audio_log_mel(bench, data):
    waveforms = data.space.to_polyfuse("audio", data.test.tensors["audio"], torch.Generator().manual_seed(0)).data
    log_mel = (data.space.front_end(waveforms) + 1.0) / 2.0
    # Griffin-Lim recovers a phase for the given magnitudes, so the log-mel comes back close but not exact.
    assert (log_mel - data.test.tensors["audio"]).abs().mean() < 0.1


@pytest.mark.slow
def test_polyfuse_coherence_matches_polyfuse_evaluation(bench, data, config, judges, tmp_path):
    model = bench.train_polyfuse(data, config, tmp_path, epochs=1).model
    contender = bench.PolyfuseContender(model)
    for mode in bench.POSTERIOR_MODES:
        ours = bench.conditional_coherence(contender, judges, data.test, mode, seed=3)
        for source in bench.FIELDS:
            targets = [name for name in bench.FIELDS if name != source]
            reference = polyfuse_conditional_coherence(contender.pipelines[mode], judges, data.test.dataset, [source], targets, seed=3)
            for result in reference:
                assert ours[f"{source}->{result.target}"] == result.coherence, (mode, source, result.target)
    joint = polyfuse_joint_coherence(contender.pipelines["sample"], judges, list(bench.FIELDS), num_samples=12, seed=3)
    assert bench.joint_coherence(contender, judges, 12, seed=3) == joint.coherence


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["MoPoE", "MMVAE+"])
def test_multivae_model_trains_and_evaluates(bench, data, config, judges, tmp_path, kind):
    model, phase = bench.train_multivae(kind, data, config, tmp_path, epochs=1)
    assert phase.samples == RECORDS
    assert phase.threads == 1
    assert len(phase.load_before) == 3
    result = bench.evaluate(bench.MultiVaeContender(kind, model, data.space), judges, data, config)
    assert set(result["probe_accuracy"]) == {"fused", "image", "audio", "sensor"}
    assert len(result["coherence"]["sample"]) == 7  # six pairs and their mean
    assert 0.0 <= result["joint_coherence"] <= 1.0


@pytest.mark.slow
def test_full_comparison_reports_ratios(bench, data, config, tmp_path):
    report = bench.run_comparison(data, config, tmp_path)
    assert [phase["name"] for phase in report["throughput_phases"]] == ["polyfuse", "MoPoE", "MMVAE+", "polyfuse"]
    assert set(report["comparison"]["throughput_ratio"]) == {"MoPoE", "MMVAE+"}
    assert [snapshot["epochs"] for snapshot in report["polyfuse_snapshots"]] == [1]
    table = bench.markdown(report)
    assert "| probe accuracy, fused |" in table
    assert "Throughput ratio (interleaved phases): polyfuse / MoPoE" in table
    assert list(report["models"]) == ["polyfuse", "polyfuse+diffusion", "MoPoE", "MMVAE+"]
    assert report["training"]["polyfuse+diffusion"]["seconds"] > report["training"]["polyfuse"]["seconds"]
    assert "| measure | polyfuse | polyfuse+diffusion | MoPoE | MMVAE+ |" in table


def test_time_to_quality_picks_first_snapshot_at_target(bench):
    snapshots = [
        {"epochs": 10, "seconds": 20.0, "probe_accuracy": {"fused": 0.99, "image": 0.90}},
        {"epochs": 5, "seconds": 10.0, "probe_accuracy": {"fused": 0.99, "image": 0.80}},
        {"epochs": 20, "seconds": 40.0, "probe_accuracy": {"fused": 1.00, "image": 0.95}},
    ]
    assert bench.time_to_quality(snapshots, {"fused": 0.98, "image": 0.85})["epochs"] == 10
    assert bench.time_to_quality(snapshots, {"fused": 0.98, "image": 0.99}) is None
    assert bench.time_to_quality([], {"fused": 0.5}) is None


def test_config_rejects_zero_epochs(bench):
    with pytest.raises(ConfigError, match="epochs must be >= 1, got 0"):
        bench.ComparisonConfig(epochs=0)


def test_probe_epochs_end_at_budget(bench):
    config = bench.ComparisonConfig(epochs=12, snapshot_epochs=(5, 10, 15))
    assert config.probe_epochs == (5, 10, 12)


def test_prepare_data_names_missing_files(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="train.jsonl, test.jsonl, polyfuse-train.json missing"):
        bench.prepare_data(tmp_path)
