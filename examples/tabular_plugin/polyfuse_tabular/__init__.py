"""Example polyfuse plugin: fixed-length tabular feature vectors."""

from .modality import TabularConfig, TabularModality

__all__ = ["TabularConfig", "TabularModality"]
