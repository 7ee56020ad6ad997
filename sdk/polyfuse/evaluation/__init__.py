"""Measurements on labelled data: probes, k-NN, per-subset classification and robustness."""

from .classification import ClassificationReport, SubsetScores, all_subsets, evaluate_classification, fit_fused_probe
from .probe import ProbeResult, fit_linear_probe, knn_accuracy
from .robustness import CorruptionCurve, RobustnessReport, corrupt_dataset, evaluate_robustness

__all__ = [
    "ClassificationReport",
    "CorruptionCurve",
    "ProbeResult",
    "RobustnessReport",
    "SubsetScores",
    "all_subsets",
    "corrupt_dataset",
    "evaluate_classification",
    "evaluate_robustness",
    "fit_fused_probe",
    "fit_linear_probe",
    "knn_accuracy",
]
