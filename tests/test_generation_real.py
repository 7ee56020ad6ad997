"""Real data end to end: cross-modal generation on a small paired digits set, judged by trained classifiers.

The schedule is short, so the thresholds sit far below the full-schedule figures in
docs/benchmarks.md, but far above chance (10%).
"""

import json
import subprocess

import pytest

from polyfuse import read_manifest
from polyfuse.data import prepare_records
from polyfuse.evaluation.classifiers import ClassifierConfig, train_classifier
from polyfuse.evaluation.coherence import conditional_coherence
from polyfuse.generation import GenerationPipeline

from conftest import SHARED_DATA, polyfuse_command, subprocess_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "fsdd").is_dir(), reason="real data sets not found beside the checkout"),
]

FIELDS = ("image", "sensor")
# Minimum coherence of image -> sensor and sensor -> image after the short schedule, per generator.
THRESHOLDS = {"vae": 0.3, "gan": 0.3, "diffusion": 0.3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("digits-generation")
    env = subprocess_env()

    def cli(*args):
        completed = subprocess.run([*polyfuse_command(), *map(str, args)], capture_output=True, text=True, env=env, timeout=1800)
        assert completed.returncode == 0, completed.stderr
        return completed

    cli("datasets", "build", "digits", "--source", SHARED_DATA, "--out", work / "data", "--limit", 1000)
    config = json.loads((work / "data" / "polyfuse-train.json").read_text())
    config["training"].update({"epochs": 15, "batch_size": 64, "kl_warmup_steps": 100})
    (work / "short.json").write_text(json.dumps(config))
    train = work / "data" / "train.jsonl"
    cli("train", "--manifest", train, "--config", work / "short.json", "--out", work / "model", "--modalities", ",".join(FIELDS), "--threads", 1)
    for kind in ("gan", "diffusion"):
        cli("train-generator", "--model", work / "model", "--generator", kind, "--manifest", train, "--epochs", 100, "--batch-size", 128, "--threads", 1)
    return work


@pytest.fixture(scope="module")
def evaluation(trained):
    model = GenerationPipeline.from_pretrained(trained / "model").model
    splits = {
        split: prepare_records(read_manifest(trained / "data" / f"{split}.jsonl").records, model.modalities, progress=False)
        for split in ("train", "test")
    }
    config = ClassifierConfig(epochs=10)
    classifiers = {field: train_classifier(model.modalities[field], splits["train"], config).classifier for field in FIELDS}
    return classifiers, splits["test"]


def test_classifiers_recognise_real_digits(evaluation):
    classifiers, test = evaluation
    for field, classifier in classifiers.items():
        assert classifier.accuracy(test) > 0.8, field


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_cross_modal_coherence_above_chance(trained, evaluation, name):
    classifiers, test = evaluation
    pipeline = GenerationPipeline.from_pretrained(trained / "model", generator=name)
    for source, target in (("image", "sensor"), ("sensor", "image")):
        (result,) = conditional_coherence(pipeline, classifiers, test, [source], [target], max_conditions=300)
        print(f"{name} {source} -> {target}: {result.coherence:.3f}")
        assert result.coherence > THRESHOLDS[name], f"{name} {source} -> {target}: {result.coherence}"
