"""Manifests and the in-memory data sets built from them."""

from .dataset import PreparedDataset, SkippedRecord, prepare_records
from .manifest import Manifest, Record, read_manifest, records_from_values

__all__ = ["Manifest", "PreparedDataset", "Record", "SkippedRecord", "prepare_records", "read_manifest", "records_from_values"]
