"""Measurements on labelled latents: linear probes and nearest-neighbour classification."""

from .probe import ProbeResult, fit_linear_probe, knn_accuracy

__all__ = ["ProbeResult", "fit_linear_probe", "knn_accuracy"]
