import numpy as np
import pytest
import torch

from polyfuse import read_manifest
from polyfuse.data import prepare_records
from polyfuse.evaluation import corrupt_dataset, evaluate_classification, evaluate_robustness, fit_linear_probe, knn_accuracy
from polyfuse.training import RunConfig, train

from conftest import tiny_run_config, write_tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("robust")
    manifest = write_tiny_dataset(folder / "data", count=60)
    output = train(manifest, folder / "model", RunConfig.from_dict(tiny_run_config(epochs=4)), progress=False)
    records = read_manifest(manifest).records
    dataset = prepare_records(records, output.model.modalities, progress=False)
    return output.model, dataset


def test_probe_and_knn_oracle():
    rng = np.random.default_rng(0)
    centers = np.eye(3) * 5
    labels = rng.integers(0, 3, 300)
    latents = centers[labels] + rng.normal(0, 0.5, (300, 3))
    probe = fit_linear_probe(latents[:200], labels[:200], latents[200:], labels[200:])
    assert probe.accuracy == 1.0
    assert knn_accuracy(latents[:200], labels[:200], latents[200:], labels[200:]) == 1.0
    shuffled = rng.permutation(labels[:200])
    assert fit_linear_probe(latents[:200], shuffled, latents[200:], labels[200:]).accuracy < 0.6


def test_probe_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="3 rows but 2 labels"):
        fit_linear_probe(np.zeros((3, 2)), [0, 1])


def test_classification_covers_every_subset(trained):
    model, dataset = trained
    report = evaluate_classification(model, dataset, dataset)
    assert list(report.subsets) == ["image+sensor", "image", "sensor"]
    for scores in report.subsets.values():
        assert 0.0 <= scores.probe <= 1.0
        assert 0.0 <= scores.knn <= 1.0
    assert report.subsets["image+sensor"].probe > 0.6  # three classes, chance is 1/3


def test_corrupt_dataset_changes_only_one_field(trained):
    model, dataset = trained
    corrupted = corrupt_dataset(dataset, model.modalities["image"], "noise", 0.5, seed=1)
    assert corrupted.items["sensor"] is dataset.items["sensor"]
    assert not torch.equal(corrupted.items["image"][0], dataset.items["image"][0])
    again = corrupt_dataset(dataset, model.modalities["image"], "noise", 0.5, seed=1)
    assert torch.equal(corrupted.items["image"][0], again.items["image"][0])


def test_robustness_report_shapes_and_degradation(trained):
    model, dataset = trained
    report = evaluate_robustness(model, dataset, dataset, corruption_levels={"image": {"noise": [0.0, 1.0]}})
    assert set(report.missing_one) == {"image", "sensor"}
    assert list(report.missing_k) == [1]
    curve = report.corruptions[0]
    assert (curve.field, curve.kind, curve.levels) == ("image", "noise", [0.0, 1.0])
    assert curve.accuracy[0] == pytest.approx(report.clean)
    assert curve.accuracy[1] <= curve.accuracy[0] + 0.05


def test_baselines_score_every_subset(trained):
    from polyfuse.evaluation.baselines import evaluate_baselines
    from polyfuse.evaluation.classifiers import ClassifierConfig

    model, dataset = trained
    report = evaluate_baselines(model.modalities, dataset, dataset, ClassifierConfig(epochs=3, batch_size=16))
    assert set(report.unimodal) == {"image", "sensor"}
    assert list(report.late_fusion) == ["image+sensor", "image", "sensor"]
    assert list(report.early_fusion) == ["image+sensor", "image", "sensor"]
    assert report.late_fusion["image"] == report.unimodal["image"]
    assert report.late_fusion["image+sensor"] > 0.5


def test_early_fusion_dropout_keeps_one_present_field():
    from polyfuse.evaluation.baselines import _dropout_mask
    from polyfuse.modality import ModalityBatch

    present = {
        "image": torch.tensor([True, True, False, True] * 50),
        "sensor": torch.tensor([True, False, True, True] * 50),
    }
    batch = {name: ModalityBatch(torch.zeros(200, 2), mask) for name, mask in present.items()}
    keep = _dropout_mask(batch, ["image", "sensor"], 0.9, torch.Generator().manual_seed(0))
    kept = torch.stack([keep["image"], keep["sensor"]], dim=1)
    assert kept.any(dim=1).all()
    assert not (keep["image"] & ~present["image"]).any()
    assert not (keep["sensor"] & ~present["sensor"]).any()
    # At a rate of 0.9 most records with both fields lose one of them.
    both = present["image"] & present["sensor"]
    assert (kept[both].sum(dim=1) == 1).float().mean() > 0.5
