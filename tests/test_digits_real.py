"""Real data end to end: build the paired digits set, train through the CLI, probe the latents.

A label-balanced subset and a short schedule keep this in the default suite; the thresholds
are looser than the full-schedule figures in docs/benchmarks.md but far above chance (10%).
"""

import json
import subprocess

import numpy as np
import pytest

from polyfuse import MultimodalVAE, read_manifest
from polyfuse.data import prepare_records
from polyfuse.encoding import encode_prepared
from polyfuse.evaluation import fit_linear_probe

from conftest import SHARED_DATA, polyfuse_command, subprocess_env

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "fsdd").is_dir(), reason="real data sets not found beside the checkout")

FIELDS = ("image", "audio", "sensor")
# Minimum test accuracy of a probe on the fused and on each unimodal latent after the short schedule.
THRESHOLDS = {"image+audio+sensor": 0.99, "image": 0.9, "audio": 0.85, "sensor": 0.93}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("digits")
    env = subprocess_env()

    def cli(*args):
        completed = subprocess.run([*polyfuse_command(), *map(str, args)], capture_output=True, text=True, env=env, timeout=1200)
        assert completed.returncode == 0, completed.stderr
        return completed

    cli("datasets", "build", "digits", "--source", SHARED_DATA, "--out", work / "data", "--limit", 1500)
    config = json.loads((work / "data" / "polyfuse-train.json").read_text())
    # 1,500 records in batches of 64 for 24 epochs: 576 steps.
    config["training"].update({"epochs": 24, "batch_size": 64, "kl_warmup_steps": 200})
    (work / "short.json").write_text(json.dumps(config))
    cli("train", "--manifest", work / "data" / "train.jsonl", "--config", work / "short.json", "--out", work / "model",
        "--modalities", ",".join(FIELDS), "--threads", 1)
    cli("encode", "--model", work / "model", "--manifest", work / "data" / "test.jsonl", "--out", work / "test.npz")
    return work


@pytest.fixture(scope="module")
def prepared(trained):
    model = MultimodalVAE.from_pretrained(trained / "model")
    modalities = {field: model.modalities[field] for field in FIELDS}
    splits = {split: prepare_records(read_manifest(trained / "data" / f"{split}.jsonl").records, modalities, progress=False) for split in ("train", "test")}
    return model, splits


def test_encoded_test_split_covers_every_record(trained):
    with np.load(trained / "test.npz") as latents:
        assert latents["mean"].shape == (1500, 32)
        assert latents["present"].all()
        assert sorted(set(latents["labels"].tolist())) == [str(d) for d in range(10)]


@pytest.mark.parametrize("subset", list(THRESHOLDS))
def test_probe_accuracy_on_real_digits(prepared, subset):
    model, splits = prepared
    fields = subset.split("+")
    train = encode_prepared(model, splits["train"], fields)
    test = encode_prepared(model, splits["test"], fields)
    probe = fit_linear_probe(train.mean, train.labels, test.mean, test.labels)
    print(f"{subset}: {probe.accuracy:.4f}")
    assert probe.accuracy >= THRESHOLDS[subset], f"{subset}: {probe.accuracy:.3f}"
