"""Per-modality classifiers that judge generated data: each modality's own encoder backbone plus a linear head.

A classifier is built from ``modality.build_encoder(...)``'s backbone, so any modality
plugin gets one, and it reads the modality's preprocessed space, which is what decoders
generate. It is trained supervised on real preprocessed data (with the modality's own
training augmentation when asked) and saved as safetensors plus JSON.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_to_dict, require
from ..data.dataset import PreparedDataset
from ..errors import CheckpointError
from ..modality import Modality, ModalityBatch
from ..persistence import load_tensors, save_tensors
from ..progress import progress_bar

logger = logging.getLogger(__name__)

CLASSIFIER_FORMAT = "polyfuse-classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    """Training settings of a modality classifier."""

    epochs: int = 15  # passes over the labelled training rows
    batch_size: int = 128  # rows per step
    learning_rate: float = 1e-3  # AdamW step size
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    augment: bool = True  # apply the modality's training augmentation, which makes the classifier robust to decoder blur
    seed: int = 0  # seeds initialisation, shuffling and augmentation

    def __post_init__(self) -> None:
        require(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class ClassifierFit:
    """Result of :func:`train_classifier`."""

    classifier: ModalityClassifier
    history: list[float] = field(default_factory=list)  # mean cross-entropy per epoch
    train_accuracy: float = 0.0  # share of training rows classified correctly after training, in [0, 1]
    seconds: float = 0.0  # wall time of training


class ModalityClassifier(nn.Module):
    """The backbone of a modality's encoder and a linear layer to class logits."""

    def __init__(self, modality: Modality, classes: Sequence[Any]):
        super().__init__()
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {list(classes)}")
        self.modality = modality
        self.classes = list(classes)
        # The encoder's Gaussian head is dropped, so its latent size does not matter.
        self.backbone = modality.build_encoder(1).backbone
        self.head = nn.Linear(modality.config.feature_dim, len(self.classes))

    @property
    def field(self) -> str:
        return self.modality.field

    def forward(self, batch: ModalityBatch) -> torch.Tensor:
        """Return class logits (B, classes) for every row of ``batch``."""
        return self.head(self.backbone(batch.data, batch.lengths))  # (B, F) -> (B, classes)

    @torch.no_grad()
    def predict(self, batch: ModalityBatch, batch_size: int = 256) -> np.ndarray:
        """Return the predicted class of each row (B,), in chunks of ``batch_size`` rows."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        indices = []
        for start in range(0, batch.batch_size, batch_size):
            rows = torch.arange(start, min(start + batch_size, batch.batch_size))
            indices.append(self(batch.select(rows).to(device)).argmax(dim=-1).cpu())
        self.train(was_training)
        chosen = torch.cat(indices).numpy() if indices else np.zeros(0, dtype=np.int64)
        return np.asarray(self.classes, dtype=object)[chosen] if chosen.size else np.asarray([], dtype=object)

    def accuracy(self, dataset: PreparedDataset) -> float:
        """Return the share of labelled rows of ``dataset`` that hold this field and are classified correctly."""
        batch, labels = labelled_rows(dataset, self.modality)
        predictions = self.predict(batch)
        return float(np.mean([predicted == label for predicted, label in zip(predictions, labels)]))

    def save(self, path: str | Path) -> Path:
        """Write weights, classes and the modality config to one safetensors file, atomically."""
        metadata = {
            "format": CLASSIFIER_FORMAT,
            "field": self.field,
            "modality": self.modality.name,
            "modality_config": json.dumps(config_to_dict(self.modality.config), sort_keys=True),
            "classes": json.dumps(self.classes),
        }
        return save_tensors(path, self.state_dict(), metadata)

    @classmethod
    def load(cls, path: str | Path, modality: Modality, device: str | torch.device = "cpu") -> ModalityClassifier:
        """Load a classifier saved by :meth:`save` for ``modality``, whose config must match the saved one."""
        tensors, metadata = load_tensors(path)
        if metadata.get("format") != CLASSIFIER_FORMAT:
            raise CheckpointError(f"{path} is not a polyfuse classifier (format {metadata.get('format')!r})")
        saved_config = json.loads(metadata["modality_config"])
        if metadata.get("modality") != modality.name or saved_config != config_to_dict(modality.config):
            raise CheckpointError(
                f"classifier {path} was trained for a '{metadata.get('modality')}' modality with another config; train it again for this model"
            )
        classifier = cls(modality, json.loads(metadata["classes"]))
        classifier.load_state_dict(tensors, strict=True)
        return classifier.to(device).eval()


def labelled_rows(dataset: PreparedDataset, modality: Modality) -> tuple[ModalityBatch, list[Any]]:
    """Collate the rows of ``dataset`` that hold ``modality.field`` and a label; return them with their labels."""
    if modality.field not in dataset.items:
        raise ValueError(f"the data set has no field '{modality.field}'; it has {', '.join(dataset.items)}")
    rows = [index for index, (item, label) in enumerate(zip(dataset.items[modality.field], dataset.labels)) if item is not None and label is not None]
    if not rows:
        raise ValueError(f"no record contains both a label and the field '{modality.field}'; a classifier needs labelled data")
    batch = modality.collate([dataset.items[modality.field][index] for index in rows])
    return batch, [dataset.labels[index] for index in rows]


def train_classifier(
    modality: Modality,
    dataset: PreparedDataset,
    config: ClassifierConfig = ClassifierConfig(),
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ClassifierFit:
    """Train a classifier for ``modality`` on the labelled rows of ``dataset``; classes are the sorted distinct labels."""
    started = time.perf_counter()
    batch, labels = labelled_rows(dataset, modality)
    classes = sorted(set(labels), key=lambda label: (str(type(label)), label))
    targets = torch.tensor([classes.index(label) for label in labels])

    # 1. Model and optimizer; the seed fixes initialisation, order and augmentation.
    torch.manual_seed(config.seed)
    classifier = ModalityClassifier(modality, classes).to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    random = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = math.ceil(batch.batch_size / config.batch_size)

    # 2. Epochs of shuffled, augmented batches.
    history = []
    classifier.train()
    for epoch in progress_bar(range(config.epochs), desc=f"Classifier {modality.field}", unit="epoch", disable=not progress):
        order = torch.randperm(batch.batch_size, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        total = 0.0
        for step in range(steps_per_epoch):
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            inputs = batch.select(rows).to(device)
            if config.augment:
                inputs = modality.augment(inputs, random)
            loss = F.cross_entropy(classifier(inputs), targets[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        history.append(total / steps_per_epoch)
        logger.debug("classifier %s epoch %d: cross-entropy %.4f", modality.field, epoch + 1, history[-1])

    # 3. Accuracy on the training rows, without augmentation.
    predictions = classifier.predict(batch)
    train_accuracy = float(np.mean([predicted == label for predicted, label in zip(predictions, labels)]))
    classifier.eval()
    seconds = time.perf_counter() - started
    logger.info("Trained the %s classifier on %d rows: train accuracy %.4f (%.1f s)", modality.field, len(labels), train_accuracy, seconds)
    return ClassifierFit(classifier, history, train_accuracy, seconds)


def train_classifiers(
    modalities: Mapping[str, Modality],
    dataset: PreparedDataset,
    config: ClassifierConfig = ClassifierConfig(),
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, ClassifierFit]:
    """Train one classifier per field of ``modalities`` on ``dataset``."""
    return {name: train_classifier(modality, dataset, config, device=device, progress=progress) for name, modality in modalities.items()}
