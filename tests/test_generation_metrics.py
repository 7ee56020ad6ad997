"""Generation metrics: per-modality classifiers, coherence, Fréchet distance, diversity and mode coverage."""

import numpy as np
import pytest
import torch

from polyfuse.data.dataset import prepare_records
from polyfuse.data.manifest import read_manifest
from polyfuse.errors import CheckpointError
from polyfuse.evaluation.classifiers import ClassifierConfig, ModalityClassifier, train_classifier
from polyfuse.evaluation.coherence import conditional_coherence, joint_coherence
from polyfuse.evaluation.diversity import frechet_distance, mean_pairwise_distance, mode_coverage, within_condition_diversity
from polyfuse.evaluation.latent_quality import measure_latent_quality
from polyfuse.generation import GenerationPipeline
from polyfuse.training import RunConfig, train

from generation_fixtures import tiny_multimodal_config, write_tiny_multimodal_dataset


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A tiny four-modality model, its prepared training data and a VAE-prior pipeline."""
    folder = tmp_path_factory.mktemp("metrics")
    manifest = write_tiny_multimodal_dataset(folder / "data", count=30)
    train(manifest, folder / "model", RunConfig.from_dict(tiny_multimodal_config(epochs=1)), progress=False)
    pipeline = GenerationPipeline.from_pretrained(folder / "model", generator="vae")
    dataset = prepare_records(read_manifest(manifest).records, pipeline.model.modalities, progress=False)
    return pipeline, dataset, folder


class ConstantClassifier:
    """Predicts one class for every row, so coherence has a known value."""

    def __init__(self, label):
        self.label = label

    def predict(self, batch):
        return np.full(batch.batch_size, self.label, dtype=object)


# -- distribution measures -------------------------------------------------------


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    real = rng.normal(0.0, 1.0, (20000, 3))
    assert frechet_distance(real, rng.normal(0.0, 1.0, (20000, 3))) < 0.01
    # For N(0, I) and N(m, s^2 I) the distance is |m|^2 + D (1 - s)^2.
    shifted = rng.normal(2.0, 0.5, (20000, 3))
    assert frechet_distance(real, shifted) == pytest.approx(3 * 4.0 + 3 * 0.25, rel=0.03)


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError, match=r"real latents have 3 dimensions and generated ones 2"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"generated contains NaN or infinite values"):
        frechet_distance(np.zeros((4, 2)), np.full((4, 2), np.nan))


def test_pairwise_and_within_condition_diversity():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [0.0, 1.0]])
    assert mean_pairwise_distance(points[:2]) == pytest.approx(5.0)
    assert within_condition_diversity(points, np.array([0, 0, 1, 1])) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="every condition has a single sample"):
        within_condition_diversity(points, np.array([0, 1, 2, 3]))


def test_mode_coverage_separates_collapse_from_match():
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 10.0, (8, 4))
    real = centres[rng.integers(0, 8, 2000)] + rng.normal(0, 0.5, (2000, 4))
    matched = centres[rng.integers(0, 8, 2000)] + rng.normal(0, 0.5, (2000, 4))
    collapsed = centres[np.zeros(2000, dtype=int)] + rng.normal(0, 0.5, (2000, 4))
    good = mode_coverage(real, matched, clusters=8)
    bad = mode_coverage(real, collapsed, clusters=8)
    assert good.coverage > 0.95
    assert 0.9 < good.diversity_ratio < 1.1
    assert bad.coverage < 0.3
    assert bad.diversity_ratio < 0.2
    assert bad.largest_cluster_share > 0.95


# -- classifiers -----------------------------------------------------------------


def test_classifier_learns_labels_and_round_trips(setting, tmp_path):
    pipeline, dataset, _ = setting
    modality = pipeline.model.modalities["image"]
    fit = train_classifier(modality, dataset, ClassifierConfig(epochs=30, batch_size=8, learning_rate=3e-3))
    assert fit.train_accuracy == 1.0  # the tiny classes are bright bars at separate rows
    assert fit.history[-1] < fit.history[0]
    assert fit.classifier.classes == [0, 1, 2]

    path = fit.classifier.save(tmp_path / "image.safetensors")
    loaded = ModalityClassifier.load(path, modality)
    batch = modality.collate(dataset.items["image"])
    assert list(loaded.predict(batch)) == list(fit.classifier.predict(batch))
    assert loaded.accuracy(dataset) == 1.0

    other = modality.replace_config(width=8)
    with pytest.raises(CheckpointError, match="was trained for a 'image' modality with another config"):
        ModalityClassifier.load(path, other)


def test_classifier_works_for_every_modality(setting):
    pipeline, dataset, _ = setting
    for field, modality in pipeline.model.modalities.items():
        fit = train_classifier(modality, dataset, ClassifierConfig(epochs=2, batch_size=16))
        predictions = fit.classifier.predict(modality.collate(dataset.items[field]))
        assert predictions.shape == (30,), field
        assert set(predictions) <= {0, 1, 2}, field


def test_classifier_needs_labels(setting):
    pipeline, dataset, _ = setting
    unlabelled = type(dataset)(dataset.records, dataset.items)
    unlabelled.records = [type(record)(record.id, record.values, record.source, None) for record in dataset.records]
    with pytest.raises(ValueError, match="no record contains both a label and the field 'image'"):
        train_classifier(pipeline.model.modalities["image"], unlabelled)


# -- coherence -------------------------------------------------------------------


def test_conditional_coherence_counts_matching_labels(setting):
    pipeline, dataset, _ = setting
    classifiers = {"audio": ConstantClassifier(0), "sensor": ConstantClassifier(1), "image": ConstantClassifier(2)}
    results = conditional_coherence(pipeline, classifiers, dataset, ["image"], samples_per_condition=2, batch_size=7)
    by_target = {result.target: result for result in results}
    assert sorted(by_target) == ["audio", "sensor"]
    # Labels cycle 0, 1, 2, so a classifier that always predicts one class is right a third of the time.
    assert by_target["audio"].coherence == pytest.approx(1 / 3)
    assert by_target["sensor"].coherence == pytest.approx(1 / 3)
    assert by_target["audio"].samples == 60
    assert by_target["audio"].sources == ("image",)

    subset = conditional_coherence(pipeline, classifiers, dataset, ["image"], ["audio"], max_conditions=12)
    assert subset[0].samples == 12


def test_joint_coherence_of_agreeing_classifiers(setting):
    pipeline, _, _ = setting
    agreeing = {"image": ConstantClassifier(1), "audio": ConstantClassifier(1)}
    result = joint_coherence(pipeline, agreeing, ["image", "audio"], num_samples=10, batch_size=4)
    assert (result.coherence, result.samples, result.class_counts) == (1.0, 10, {"1": 10})
    disagreeing = {"image": ConstantClassifier(1), "audio": ConstantClassifier(2)}
    assert joint_coherence(pipeline, disagreeing, ["image", "audio"], num_samples=10).coherence == 0.0
    with pytest.raises(ValueError, match=r"no classifier for field\(s\) sensor"):
        joint_coherence(pipeline, agreeing, ["image", "sensor"], num_samples=10)


def test_latent_quality_of_vae_prior(setting):
    pipeline, dataset, _ = setting
    quality = measure_latent_quality(pipeline, dataset, "image", num_samples=200, conditions=5, samples_per_condition=4)
    assert quality.frechet_distance >= 0
    assert quality.within_condition_diversity > 0
    # Two N(0, I) draws in 4 dimensions differ by N(0, 2 I), whose mean length is sqrt(2) * 1.88 = 2.66.
    assert quality.unconditional_diversity == pytest.approx(2.66, rel=0.1)
    assert quality.samples == 200
