"""Tests of retrieval metrics: the formulas, an oracle evaluation in numpy, and a short run on real digits."""

from __future__ import annotations

import math
import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import tiny_run_config, write_tiny_dataset
from polyfuse import encode_manifest
from polyfuse.retrieval import RetrievalIndex, average_precision_at_k, build_index, evaluate_retrieval, recall_at_k
from polyfuse.training import RunConfig, train

SOURCE_DIR = Path(os.environ.get("POLYFUSE_DIGITS_SOURCE", Path(__file__).resolve().parents[2] / "shared" / "data"))
DIGITS_FILES = ("mnist/mnist_test.npz", "mnist/mnist_train5k.npz", "fsdd/fsdd.npz", "pendigits/pendigits_trajectories.npz")


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    faiss.omp_set_num_threads(1)


# -- formulas ----------------------------------------------------------------------


def test_average_precision_by_hand():
    relevance = np.array(
        [
            [1, 0, 1, 0, 0],  # R = 2: (1/1 + 2/3) / 2
            [1, 0, 1, 0, 0],  # R = 7, capped at k = 5: (1/1 + 2/3) / 5
            [0, 0, 0, 0, 1],  # R = 1: (1/5) / 1
            [1, 1, 1, 1, 1],  # R = 100: a perfect top 5 scores 1
            [0, 0, 0, 0, 0],  # R = 3 but none found
            [0, 0, 0, 0, 0],  # R = 0: undefined
        ],
        dtype=bool,
    )
    counts = np.array([2, 7, 1, 100, 3, 0])
    expected = [(1 + 2 / 3) / 2, (1 + 2 / 3) / 5, 1 / 5, 1.0, 0.0, math.nan]
    np.testing.assert_allclose(average_precision_at_k(relevance, counts, k=5), expected)


def test_average_precision_uses_only_top_k():
    relevance = np.array([[0, 1, 1, 1]], dtype=bool)
    assert average_precision_at_k(relevance, np.array([3]), k=2)[0] == pytest.approx((1 / 2) / 2)


def test_recall_at_k_is_hit_rate():
    relevance = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
    assert recall_at_k(relevance, 1) == pytest.approx(1 / 3)
    assert recall_at_k(relevance, 2) == pytest.approx(2 / 3)
    assert math.isnan(recall_at_k(np.zeros((0, 3), bool), 1))


# -- evaluation against a numpy oracle -----------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("retrieval-metrics")
    manifest = write_tiny_dataset(folder / "data", count=30)
    train(manifest, folder / "model", RunConfig.from_dict(tiny_run_config(epochs=3)), progress=False)
    build_index(folder / "model", manifest, folder / "index", progress=False)
    return folder / "index", manifest


def oracle(index: RetrievalIndex, manifest: Path, query: str, target: str, exclude_self: bool) -> tuple[float, dict[int, float]]:
    """mAP@10 and class recall@K by brute-force cosine ranking in numpy, from the encoded latents."""
    encoded = encode_manifest(index.model, manifest, index.settings.fields, progress=False)
    labels = np.asarray(encoded.labels)
    gallery = encoded.mean if target == "fused" else encoded.modality_means[target]
    queries = encoded.modality_means[query]
    similarities = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (gallery / np.linalg.norm(gallery, axis=1, keepdims=True)).T
    if exclude_self:
        np.fill_diagonal(similarities, -np.inf)
    ranking = np.argsort(-similarities, axis=1, kind="stable")[:, :10]
    relevance = labels[ranking] == labels[:, None]
    counts = np.array([(labels == label).sum() - int(exclude_self) for label in labels])
    average_precisions = []
    for row, count in zip(relevance, counts):
        hits = np.cumsum(row)
        average_precisions.append(sum(hits[i] / (i + 1) for i in range(10) if row[i]) / min(count, 10))
    return float(np.mean(average_precisions)), {k: float(relevance[:, :k].any(axis=1).mean()) for k in (1, 5, 10)}


@pytest.mark.parametrize("exclude_self", [False, True])
def test_evaluation_matches_numpy_oracle(indexed, exclude_self):
    index_dir, manifest = indexed
    index = RetrievalIndex.load(index_dir)
    report = evaluate_retrieval(index, manifest, exclude_self=exclude_self, progress=False)
    assert [metrics.name for metrics in report.pairs] == [
        f"{query} -> {target}" for query in ("image", "sensor", "image+sensor") for target in ("image", "sensor", "fused")
    ]
    for query, target in (("image", "sensor"), ("sensor", "image"), ("image", "fused"), ("sensor", "sensor")):
        expected_map, expected_recall = oracle(index, manifest, query, target, exclude_self)
        metrics = report.pair([query], target)
        assert metrics.queries == 30
        assert metrics.map_at_k == pytest.approx(expected_map, abs=1e-6)
        for k, value in expected_recall.items():
            assert metrics.recall[k] == pytest.approx(value, abs=1e-6)


def test_exclude_self_never_returns_own_record(indexed):
    index_dir, manifest = indexed
    index = RetrievalIndex.load(index_dir)
    with_self = evaluate_retrieval(index, manifest, query_fields=[("image",)], targets=["image"], paired=True, progress=False)
    without_self = evaluate_retrieval(index, manifest, query_fields=[("image",)], targets=["image"], exclude_self=True, progress=False)
    assert with_self.pair(["image"], "image").instance_recall[1] == 1.0  # the query's own image is its nearest
    assert without_self.pair(["image"], "image").instance_recall is None
    expected_map, _ = oracle(index, manifest, "image", "image", exclude_self=True)
    assert without_self.pair(["image"], "image").map_at_k == pytest.approx(expected_map, abs=1e-6)


def test_paired_instance_recall(indexed):
    index_dir, manifest = indexed
    report = evaluate_retrieval(RetrievalIndex.load(index_dir), manifest, query_fields=[("image", "sensor")], targets=["fused"], paired=True, progress=False)
    metrics = report.pair(["image", "sensor"], "fused")
    assert metrics.instance_queries == 30
    assert metrics.instance_recall == {1: 1.0, 5: 1.0, 10: 1.0}  # the same fused latent as the indexed one
    text = report.to_text()
    assert "inst R@1" in text.splitlines()[0]
    assert report.to_dict()["pairs"][0]["instance_recall"] == {"1": 1.0, "5": 1.0, "10": 1.0}


def test_query_without_relevant_items(indexed, tmp_path):
    index_dir, manifest = indexed
    lines = manifest.read_text().splitlines()
    labelled = tmp_path / "new-label.jsonl"
    # Record 0 with a label that no indexed record has: it counts as a query without relevant items.
    absolute = lines[0].replace('"images/', f'"{manifest.parent}/images/').replace('"sensor/', f'"{manifest.parent}/sensor/')
    labelled.write_text(absolute.replace('"label": 0', '"label": 99') + "\n")
    report = evaluate_retrieval(RetrievalIndex.load(index_dir), labelled, query_fields=[("image",)], targets=["image"], progress=False)
    metrics = report.pair(["image"], "image")
    assert metrics.queries == 0
    assert metrics.without_relevant == 1
    assert math.isnan(metrics.map_at_k)


def test_evaluation_rejects_bad_arguments(indexed, tmp_path):
    index_dir, manifest = indexed
    index = RetrievalIndex.load(index_dir)
    with pytest.raises(ValueError, match="paired and exclude_self contradict"):
        evaluate_retrieval(index, manifest, paired=True, exclude_self=True)
    with pytest.raises(ValueError, match="unknown target 'audio'"):
        evaluate_retrieval(index, manifest, targets=["audio"])
    with pytest.raises(ValueError, match="unknown modality field"):
        evaluate_retrieval(index, manifest, query_fields=[("audio",)])
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(manifest.read_text().replace('"label": ', '"group": '))
    (tmp_path / "images").symlink_to(manifest.parent / "images")
    (tmp_path / "sensor").symlink_to(manifest.parent / "sensor")
    with pytest.raises(ValueError, match="has no 'label' values"):
        evaluate_retrieval(index, unlabelled, progress=False)


# -- a short run on the real digits set -----------------------------------------------

# Tiny networks. Audio's log-likelihood sums over thousands of mel bins, so its weight is
# lowered to keep it from drowning out the other modalities in 25 short epochs.
DIGITS_TINY_CONFIG = {
    "model": {"latent_dim": 8, "fusion": "mopoe"},
    "training": {
        "epochs": 25, "batch_size": 32, "learning_rate": 0.002, "kl_warmup_steps": 50, "alignment_weight": 50.0,
        "augment": False, "checkpoint_every": 100_000, "log_every": 100_000, "seed": 0,
    },
    "modalities": {
        "image": {"size": [16, 16], "channels": 1, "width": 8, "feature_dim": 64, "background": [0, 0, 0]},
        "audio": {
            "sample_rate": 8000, "duration": 1.0, "n_fft": 256, "hop_length": 128, "n_mels": 32, "width": 8,
            "feature_dim": 64, "likelihood_weight": 0.05,
        },
        "sensor": {
            "channels": 3, "sample_rate": 10.0, "input_sample_rate": 10.0, "length": 32, "length_mode": "resample",
            "normalize": "series", "normalize_channels": [0, 1], "width": 8, "depth": 2, "feature_dim": 64,
        },
    },
}


@pytest.mark.skipif(not all((SOURCE_DIR / name).is_file() for name in DIGITS_FILES), reason=f"digits source files not found in {SOURCE_DIR}")
def test_digits_cross_modal_map_above_chance(tmp_path):
    from polyfuse_datasets.digits import DigitsRecipe

    # 300 records per split, 30 per digit; every test record is a query, the other 299 its gallery.
    data = DigitsRecipe().build(tmp_path / "data", source=SOURCE_DIR, seed=0, limit=300, progress=False)
    train(data.manifests["train"], tmp_path / "model", RunConfig.from_dict(DIGITS_TINY_CONFIG), fields=["image", "audio", "sensor"], progress=False)
    build_index(tmp_path / "model", data.manifests["test"], tmp_path / "index", progress=False)
    index = RetrievalIndex.load(tmp_path / "index")
    fields = [("image",), ("audio",), ("sensor",)]
    report = evaluate_retrieval(index, data.manifests["test"], query_fields=fields, targets=["image", "audio", "sensor"], exclude_self=True, progress=False)

    # With random rankings, mAP@10 over 10 balanced classes is about 0.036 and recall@1 0.1.
    chance = chance_average_precision(report.pair(["audio"], "image").queries)
    assert chance < 0.05
    assert report.pair(["audio"], "image").map_at_k >= 0.2
    assert report.pair(["sensor"], "image").map_at_k >= 0.35
    assert report.pair(["sensor"], "image").recall[1] >= 0.5
    for query in ("image", "audio", "sensor"):
        for target in ("image", "audio", "sensor"):
            assert report.pair([query], target).map_at_k >= 0.15, f"{query} -> {target}"


def chance_average_precision(queries: int, classes: int = 10, k: int = 10, trials: int = 200) -> float:
    """Return the mean AP@k of random rankings over balanced classes, by simulation."""
    rng = np.random.default_rng(0)
    per_class = queries // classes
    labels = np.repeat(np.arange(classes), per_class)
    values = []
    for _ in range(trials):
        query = rng.integers(0, classes)
        ranking = rng.permutation(len(labels) - 1)[:k]
        gallery = np.delete(labels, query * per_class)  # the query's own record is excluded
        relevance = (gallery[ranking] == query)[None, :]
        values.append(average_precision_at_k(relevance, np.array([per_class - 1]), k)[0])
    return float(np.mean(values))
