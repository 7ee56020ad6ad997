"""Measurements of the shoulder analytics example: sensor-only classification, text -> sensor retrieval and robustness.

Each measurement takes a trained model (or an index built with it) and the labelled
manifests that the ``shoulder`` recipe writes, and returns plain values that JSON can encode.
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
RETRIEVAL_K = 10  # hits per exercise-name query, equal to the depth of the mAP@10 that evaluate_retrieval reports


@dataclass
class Split:
    """Records of one split manifest: sensor windows as NPY file paths, with their labels and metadata."""

    manifest: Path
    records: list[dict[str, Any]]  # parsed manifest lines, as the recipe wrote them

    @classmethod
    def read(cls, manifest: Path) -> Split:
        """Read a JSON-lines manifest, skipping blank lines."""
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
        """Load every record's (time, channels) window from its NPY file, relative to the manifest's folder."""
        return [np.load(self.manifest.parent / record[SENSOR]) for record in self.records]


@dataclass
class SensorProbe:
    """Linear probe fitted on sensor-only latents of the training subjects."""

    result: ProbeResult

    def accuracy(self, latents: np.ndarray, labels: np.ndarray) -> float:
        """Return the share of ``latents`` whose predicted label equals ``labels``."""
        return float(np.mean(self.result.model.predict(latents) == labels))


def sensor_latents(model: MultimodalVAE, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Encode (time, channels) arrays with the sensor modality alone and return the posterior means (N, latent_dim)."""
    return encode_records(model, [{SENSOR: array} for array in arrays], [SENSOR]).mean


def classify_from_sensor(model: MultimodalVAE, train: Split, test: Split) -> tuple[SensorProbe, dict[str, Any]]:
    """Fit a linear probe on the training subjects' sensor latents and score it on the unseen test subjects.

    Return the probe and a report with probe and k-NN accuracy, the majority-class baseline,
    and accuracy per exercise and per test subject.
    """
    overlap = set(train.subjects) & set(test.subjects)
    if overlap:
        raise ValueError(
            f"subjects {sorted(overlap)} are in both {train.manifest} and {test.manifest}, so the accuracy would not be "
            "subject-independent; rebuild the data set with the shoulder recipe"
        )
    train_latents = sensor_latents(model, train.sensor_arrays())
    test_latents = sensor_latents(model, test.sensor_arrays())
    probe = fit_linear_probe(train_latents, train.labels, test_latents, test.labels)
    names = test.exercise_names()
    correct = probe.predictions == test.labels
    per_exercise = {names[label]: float(np.mean(correct[test.labels == label])) for label in sorted(names)}
    subjects = np.asarray([record["subject"] for record in test.records])
    per_subject = {str(subject): float(np.mean(correct[subjects == subject])) for subject in test.subjects}
    # Majority-class baseline: the accuracy of always predicting the most frequent test exercise.
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
    """Measure text -> sensor retrieval on the test subjects, and run one free-text query.

    The report has three parts. The first is class-based metrics with every test caption as a
    query, with the query's own record left out. The second is precision and AP at
    ``RETRIEVAL_K`` for one query per exercise name. The third is the ``top`` recordings
    nearest to ``query``.
    """
    # 1. Query with every test caption. A hit is relevant when it shows the caption's exercise.
    report = evaluate_retrieval(index, test.manifest, query_fields=[(TEXT,)], targets=[SENSOR], exclude_self=True, progress=False)
    pair = report.pair((TEXT,), SENSOR)
    captions = {"queries": pair.queries, "map_at_10": pair.map_at_k, "recall": {str(k): value for k, value in pair.recall.items()}}

    # 2. Query once per exercise, with its name in lower case as a clinician would type it.
    names = test.exercise_names()
    counts = Counter(test.labels.tolist())
    per_exercise = {}
    for label, name in sorted(names.items()):
        hits = index.search([{TEXT: name.lower()}], SENSOR, k=RETRIEVAL_K)[0].hits
        relevance = np.asarray([[hit.label == label for hit in hits]])  # (1, k)
        per_exercise[name] = {
            # Divided by k, not by the hits returned, so an index of fewer than k records is not flattered.
            "precision_at_10": float(relevance.sum() / RETRIEVAL_K),
            "ap_at_10": float(average_precision_at_k(relevance, np.asarray([counts[label]]), RETRIEVAL_K)[0]),
        }

    # 3. Run the free-text query.
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
    channel's own standard deviation in the series, so the noise scales with each channel's spread.
    """
    arrays = test.sensor_arrays()
    labels = test.labels
    channel_names = model.modalities[SENSOR].config.channel_names or tuple(f"channel_{c}" for c in range(arrays[0].shape[1]))
    report: dict[str, Any] = {"clean": probe.accuracy(sensor_latents(model, arrays), labels), "zeroed_channel": {}, "noise": {}}

    # 1. Zero one channel at a time, as a dead channel such as a failed gyroscope axis reads.
    for channel, name in enumerate(channel_names):
        zeroed = [_with_zero_channel(array, channel) for array in arrays]
        report["zeroed_channel"][name] = probe.accuracy(sensor_latents(model, zeroed), labels)

    # 2. Add noise to every channel. Runs with the same seed draw the same noise.
    rng = np.random.default_rng(seed)
    for level in noise_levels:
        noisy = [array + rng.normal(size=array.shape) * level * array.std(axis=0, keepdims=True) for array in arrays]
        report["noise"][f"{level:g}"] = probe.accuracy(sensor_latents(model, noisy), labels)
    return report


def _with_zero_channel(array: np.ndarray, channel: int) -> np.ndarray:
    zeroed = array.copy()
    zeroed[:, channel] = 0.0
    return zeroed
