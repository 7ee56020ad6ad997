"""The three measurements of the shoulder analytics example: sensor-only classification, text -> sensor retrieval, robustness.

Each function takes a trained model and the labelled manifests that the ``shoulder`` recipe
writes, and returns plain values ready for JSON.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polyfuse import MultimodalVAE, encode_records
from polyfuse.evaluation import ProbeResult, fit_linear_probe, knn_accuracy
from polyfuse.retrieval import RetrievalIndex, average_precision_at_k, evaluate_retrieval

SENSOR = "sensor"
TEXT = "text"
RETRIEVAL_K = 10  # depth of the per-exercise text queries, the same as mAP@10's


@dataclass
class Split:
    """The records of one manifest: the sensor series as files, with their labels and metadata."""

    manifest: Path
    records: list[dict[str, Any]]  # manifest lines as written by the recipe

    @classmethod
    def read(cls, manifest: Path) -> Split:
        lines = manifest.read_text(encoding="utf-8").splitlines()
        return cls(manifest, [json.loads(line) for line in lines if line.strip()])

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([record["label"] for record in self.records])

    @property
    def subjects(self) -> list[int]:
        return sorted({record["subject"] for record in self.records})

    def exercise_names(self) -> dict[int, str]:
        """Return label -> exercise name, as the recipe writes them into every record."""
        return {record["label"]: record["exercise"] for record in self.records}

    def sensor_arrays(self) -> list[np.ndarray]:
        """Load every record's (time, channels) window from its NPY file."""
        return [np.load(self.manifest.parent / record[SENSOR]) for record in self.records]


@dataclass
class SensorProbe:
    """A linear probe fitted on sensor-only latents of the training subjects."""

    result: ProbeResult

    def accuracy(self, latents: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.result.model.predict(latents) == labels))


def sensor_latents(model: MultimodalVAE, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Encode (time, channels) arrays from the sensor alone: the posterior mean (N, latent_dim)."""
    return encode_records(model, [{SENSOR: array} for array in arrays], [SENSOR]).mean


def classify_from_sensor(model: MultimodalVAE, train: Split, test: Split) -> tuple[SensorProbe, dict[str, Any]]:
    """Fit a probe on the training subjects' sensor latents and score it on the unseen test subjects."""
    overlap = set(train.subjects) & set(test.subjects)
    if overlap:
        raise ValueError(f"subjects {sorted(overlap)} are in both splits, so the accuracy would not be subject-independent; rebuild the data set")
    train_latents = sensor_latents(model, train.sensor_arrays())
    test_latents = sensor_latents(model, test.sensor_arrays())
    probe = fit_linear_probe(train_latents, train.labels, test_latents, test.labels)
    names = test.exercise_names()
    correct = probe.predictions == test.labels
    per_exercise = {names[label]: float(np.mean(correct[test.labels == label])) for label in sorted(names)}
    subjects = np.asarray([record["subject"] for record in test.records])
    per_subject = {str(subject): float(np.mean(correct[subjects == subject])) for subject in test.subjects}
    # The share of the most frequent test label: what always guessing that exercise scores.
    chance = max(Counter(test.labels.tolist()).values()) / len(test.labels)
    report = {
        "probe_accuracy": probe.accuracy,
        "knn_accuracy": knn_accuracy(train_latents, train.labels, test_latents, test.labels),
        "chance": chance,
        "per_exercise": per_exercise,
        "per_subject": per_subject,
        "train_subjects": train.subjects,
        "test_subjects": test.subjects,
    }
    return SensorProbe(probe), report


def text_to_sensor_retrieval(index: RetrievalIndex, test: Split, query: str, top: int) -> dict[str, Any]:
    """Measure text -> sensor retrieval on the test subjects, and answer one free-text query.

    Three parts: class metrics over every test caption as a query (with its own record left
    out), one query per exercise name with precision and AP at ``RETRIEVAL_K``, and the
    ``top`` recordings nearest ``query``.
    """
    # 1. Every test caption as a query; a hit is relevant when it shows the caption's exercise.
    report = evaluate_retrieval(index, test.manifest, query_fields=[(TEXT,)], targets=[SENSOR], exclude_self=True, progress=False)
    pair = report.pair((TEXT,), SENSOR)
    captions = {"queries": pair.queries, "map_at_10": pair.map_at_k, "recall": {str(k): value for k, value in pair.recall.items()}}

    # 2. One query per exercise, its name as a clinician would type it.
    names = test.exercise_names()
    counts = Counter(test.labels.tolist())
    per_exercise = {}
    for label, name in sorted(names.items()):
        hits = index.search([{TEXT: name.lower()}], SENSOR, k=RETRIEVAL_K)[0].hits
        relevance = np.asarray([[hit.label == label for hit in hits]])  # (1, k)
        per_exercise[name] = {
            "precision_at_10": float(relevance.mean()),
            "ap_at_10": float(average_precision_at_k(relevance, np.asarray([counts[label]]), RETRIEVAL_K)[0]),
        }

    # 3. The free-text query.
    hits = index.search([{TEXT: query}], SENSOR, k=top)[0].hits
    found = [
        {"id": hit.record_id, "score": hit.score, "exercise": hit.metadata["exercise"], "subject": hit.metadata["subject"],
         "start_seconds": hit.metadata["start_seconds"]}
        for hit in hits
    ]
    return {"captions": captions, "per_exercise_query": per_exercise, "query": {"text": query, "hits": found}}


def robustness(model: MultimodalVAE, probe: SensorProbe, test: Split, noise_levels: Sequence[float], seed: int) -> dict[str, Any]:
    """Score the clean-data probe on test series with one channel zeroed, and with Gaussian noise added.

    Noise at level s has, per series and channel, a standard deviation of s times that
    channel's own, so every channel is hit in proportion to its range.
    """
    arrays = test.sensor_arrays()
    labels = test.labels
    channel_names = model.modalities[SENSOR].config.channel_names or tuple(f"channel_{c}" for c in range(arrays[0].shape[1]))
    report: dict[str, Any] = {"clean": probe.accuracy(sensor_latents(model, arrays), labels), "zeroed_channel": {}, "noise": {}}

    # 1. A dead channel, such as a failed gyroscope axis, reads as zeros.
    for channel, name in enumerate(channel_names):
        zeroed = [_with_zero_channel(array, channel) for array in arrays]
        report["zeroed_channel"][name] = probe.accuracy(sensor_latents(model, zeroed), labels)

    # 2. Sensor noise on every channel, the same draws for every run with this seed.
    rng = np.random.default_rng(seed)
    for level in noise_levels:
        noisy = [array + rng.normal(size=array.shape) * level * array.std(axis=0, keepdims=True) for array in arrays]
        report["noise"][f"{level:g}"] = probe.accuracy(sensor_latents(model, noisy), labels)
    return report


def _with_zero_channel(array: np.ndarray, channel: int) -> np.ndarray:
    zeroed = array.copy()
    zeroed[:, channel] = 0.0
    return zeroed
