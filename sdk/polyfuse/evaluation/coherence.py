"""Coherence of generated samples: do they show the class of their condition, and do joint samples agree?

Conditional coherence, for a set of source modalities and a target modality, is the share
of samples generated from a labelled record's sources whose class, by a classifier
trained on real data of the target modality, equals the record's label. Joint coherence
is the share of unconditional samples whose decoded modalities are all classified as the
same class (Shi et al. 2019 and Sutter et al. 2021 use both measures for multimodal VAEs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..data.dataset import PreparedDataset
from ..generation.api import GenerationPipeline
from ..generation.conditions import condition_from_batch
from .classifiers import ModalityClassifier

logger = logging.getLogger(__name__)


@dataclass
class CoherenceResult:
    """Conditional coherence of one (sources -> target) pair."""

    sources: tuple[str, ...]  # modalities conditioned on
    target: str  # modality generated and classified
    coherence: float  # share of samples classified as their condition's label, in [0, 1]
    samples: int  # samples scored


@dataclass
class JointCoherence:
    """Coherence of unconditional joint samples."""

    fields: tuple[str, ...]  # modalities decoded from each latent
    coherence: float  # share of samples whose fields are all classified as one class, in [0, 1]
    samples: int  # samples scored
    class_counts: dict[str, int] = field(default_factory=dict)  # coherent samples per agreed class, to spot a dominant class


def conditional_coherence(
    pipeline: GenerationPipeline,
    classifiers: Mapping[str, ModalityClassifier],
    dataset: PreparedDataset,
    sources: Iterable[str],
    targets: Iterable[str] | None = None,
    *,
    samples_per_condition: int = 1,
    max_conditions: int | None = None,
    batch_size: int = 250,
    seed: int = 0,
    **sample_options: Any,
) -> list[CoherenceResult]:
    """Measure coherence from ``sources`` to each of ``targets`` over the labelled records that contain every source.

    ``targets`` defaults to every classified field outside ``sources``. Each condition gets
    ``samples_per_condition`` samples, and all targets are decoded from the same latents.
    ``max_conditions`` keeps a random subset of that many records, drawn with ``seed``.
    ``sample_options`` go to the generator (for example ``num_inference_steps``).
    """
    model = pipeline.model
    sources = model.check_fields(sources)
    targets = tuple(name for name in classifiers if name not in sources) if targets is None else model.check_fields(targets)
    _check_classifiers(classifiers, targets)
    rows = [
        index
        for index, label in enumerate(dataset.labels)
        if label is not None and all(dataset.items[name][index] is not None for name in sources)
    ]
    if not rows:
        raise ValueError(f"no labelled record contains all of {', '.join(sources)}, so coherence from them cannot be measured")
    if max_conditions is not None and max_conditions < len(rows):
        rows = sorted(np.random.default_rng(seed).choice(rows, size=max_conditions, replace=False).tolist())

    # 1. Generate from each batch of conditions and classify every target.
    random = torch.Generator(device=model.device).manual_seed(seed)
    correct = {target: 0 for target in targets}
    count = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = dataset.batch(chunk, {name: model.modalities[name] for name in dataset.items})
        condition = condition_from_batch(model, batch, sources).repeat(samples_per_condition)
        output = pipeline(condition, targets=targets, num_samples=condition.num_rows, generator=random, **sample_options)
        labels = np.repeat(np.asarray([dataset.labels[index] for index in chunk], dtype=object), samples_per_condition)
        for target in targets:
            predictions = classifiers[target].predict(output.outputs[target])
            correct[target] += int(np.sum(predictions == labels))
        count += len(labels)

    # 2. One result per target.
    results = [CoherenceResult(tuple(sources), target, correct[target] / count, count) for target in targets]
    for result in results:
        logger.info("coherence %s -> %s: %.4f (%d samples)", "+".join(result.sources), result.target, result.coherence, result.samples)
    return results


def joint_coherence(
    pipeline: GenerationPipeline,
    classifiers: Mapping[str, ModalityClassifier],
    fields: Sequence[str],
    num_samples: int = 1000,
    *,
    batch_size: int = 250,
    seed: int = 0,
    **sample_options: Any,
) -> JointCoherence:
    """Sample ``num_samples`` unconditional latents, decode ``fields`` and measure how often all their classes agree."""
    model = pipeline.model
    fields = model.check_fields(fields)
    if len(fields) < 2:
        raise ValueError(f"joint coherence needs at least 2 fields, got {list(fields)}")
    _check_classifiers(classifiers, fields)
    random = torch.Generator(device=model.device).manual_seed(seed)
    coherent = 0
    counts: dict[str, int] = {}
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        output = pipeline(None, targets=fields, num_samples=count, generator=random, **sample_options)
        predictions = np.stack([classifiers[name].predict(output.outputs[name]) for name in fields])  # (fields, count)
        agree = (predictions == predictions[0]).all(axis=0)
        coherent += int(agree.sum())
        for label in predictions[0][agree]:
            counts[str(label)] = counts.get(str(label), 0) + 1
    result = JointCoherence(tuple(fields), coherent / num_samples, num_samples, dict(sorted(counts.items())))
    logger.info("joint coherence of %s: %.4f (%d samples)", "+".join(fields), result.coherence, num_samples)
    return result


def _check_classifiers(classifiers: Mapping[str, ModalityClassifier], fields: Iterable[str]) -> None:
    missing = [name for name in fields if name not in classifiers]
    if missing:
        raise ValueError(f"no classifier for field(s) {', '.join(missing)}; classifiers exist for {', '.join(classifiers) or 'none'}")
