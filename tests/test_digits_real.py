"""Real data end to end: build the paired digits set, train through the CLI, probe the latents.

A label-balanced subset and a short schedule keep this in the default suite; the thresholds
are looser than the full-schedule figures in docs/benchmarks.md but far above chance (10%).
"""

import json
import subprocess

import numpy as np
import pytest

from polyfuse import MultimodalVAE, encode_manifest
from polyfuse.evaluation import fit_linear_probe

from conftest import SHARED_DATA, polyfuse_command, subprocess_env

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "fsdd").is_dir(), reason="real data sets not found beside the checkout")

FIELDS = ("image", "audio", "sensor")
# Minimum test accuracy of a probe on the fused and on each unimodal latent after the short schedule.
THRESHOLDS = {"image+audio+sensor": 0.97, "image": 0.85, "audio": 0.85, "sensor": 0.9}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("digits")
    env = subprocess_env(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")

    def cli(*args):
        completed = subprocess.run([*polyfuse_command(), *map(str, args)], capture_output=True, text=True, env=env, timeout=1200)
        assert completed.returncode == 0, completed.stderr
        return completed

    cli("datasets", "build", "digits", "--source", SHARED_DATA, "--out", work / "data", "--limit", 1000)
    config = json.loads((work / "data" / "polyfuse-train.json").read_text())
    config["training"].update({"epochs": 12, "kl_warmup_steps": 100})
    (work / "short.json").write_text(json.dumps(config))
    cli("train", "--manifest", work / "data" / "train.jsonl", "--config", work / "short.json", "--out", work / "model",
        "--modalities", ",".join(FIELDS), "--threads", 2)
    cli("encode", "--model", work / "model", "--manifest", work / "data" / "test.jsonl", "--out", work / "test.npz")
    return work


def test_encoded_test_split_covers_every_record(trained):
    with np.load(trained / "test.npz") as latents:
        assert latents["mean"].shape == (1000, 32)
        assert latents["present"].all()
        assert sorted(set(latents["labels"].tolist())) == [str(d) for d in range(10)]


@pytest.mark.parametrize("subset", list(THRESHOLDS))
def test_probe_accuracy_on_real_digits(trained, subset):
    model = MultimodalVAE.from_pretrained(trained / "model")
    fields = subset.split("+")
    train = encode_manifest(model, trained / "data" / "train.jsonl", fields, progress=False)
    test = encode_manifest(model, trained / "data" / "test.jsonl", fields, progress=False)
    probe = fit_linear_probe(train.mean, train.labels, test.mean, test.labels)
    assert probe.accuracy >= THRESHOLDS[subset], f"{subset}: {probe.accuracy:.3f}"
