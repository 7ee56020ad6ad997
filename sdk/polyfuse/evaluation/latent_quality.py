"""Distribution quality of a generator's latents: Fréchet distance to real latents and diversity within a condition.

Real latents are draws from the posterior of all present modalities of each record (the
product of their experts), whose mixture over records is the aggregate posterior that the
generators learn to match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.dataset import PreparedDataset
from ..fusion import product_of_experts
from ..generation.api import GenerationPipeline
from ..generation.conditions import condition_from_batch
from .diversity import frechet_distance, mean_pairwise_distance, within_condition_diversity

logger = logging.getLogger(__name__)


@dataclass
class LatentQuality:
    """Distribution measures of one generator's latents."""

    frechet_distance: float  # between unconditional samples and real latents, in squared latent units, 0 when matched
    unconditional_diversity: float  # mean pairwise distance of unconditional samples, in latent units
    real_diversity: float  # mean pairwise distance of real latents, the scale to compare against
    within_condition_diversity: float  # mean pairwise distance among samples that share one condition
    source: str  # modality the within-condition samples were conditioned on
    samples: int  # unconditional samples drawn


@torch.no_grad()
def real_latents(pipeline: GenerationPipeline, dataset: PreparedDataset, *, batch_size: int = 250, seed: int = 0) -> np.ndarray:
    """Return one draw (N, D) from the posterior of all present modalities of every record that has one."""
    model = pipeline.model
    random = torch.Generator(device=model.device).manual_seed(seed)
    draws = []
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        experts = model.encode_experts(dataset.batch(indices, {name: model.modalities[name] for name in dataset.items}))
        keep = experts.present.any(dim=1)
        draws.append(product_of_experts(experts).sample(random)[keep].cpu().numpy())
    return np.concatenate(draws)


def measure_latent_quality(
    pipeline: GenerationPipeline,
    dataset: PreparedDataset,
    source: str,
    *,
    num_samples: int = 2000,
    conditions: int = 100,
    samples_per_condition: int = 10,
    seed: int = 0,
    **sample_options: Any,
) -> LatentQuality:
    """Compare ``num_samples`` unconditional latents with real ones, and measure spread within ``conditions`` conditions on ``source``."""
    model = pipeline.model
    model.check_fields([source])
    real = real_latents(pipeline, dataset, seed=seed)
    random = torch.Generator(device=model.device).manual_seed(seed)

    # 1. Unconditional samples against real latents.
    generated = pipeline.sample_latents(None, num_samples=num_samples, generator=random, **sample_options).latents.cpu().numpy()
    distance = frechet_distance(real, generated)

    # 2. Several samples for each of the first records that hold the source.
    rows = [index for index, item in enumerate(dataset.items[source]) if item is not None][:conditions]
    if not rows:
        raise ValueError(f"no record contains the field '{source}' to condition on")
    batch = dataset.batch(rows, {name: model.modalities[name] for name in dataset.items})
    condition = condition_from_batch(model, batch, [source]).repeat(samples_per_condition)
    conditional = pipeline.sample_latents(condition, num_samples=condition.num_rows, generator=random, **sample_options).latents
    groups = np.repeat(np.arange(len(rows)), samples_per_condition)
    quality = LatentQuality(
        frechet_distance=distance,
        unconditional_diversity=mean_pairwise_distance(generated),
        real_diversity=mean_pairwise_distance(real[: min(len(real), num_samples)]),
        within_condition_diversity=within_condition_diversity(conditional.cpu().numpy(), groups),
        source=source,
        samples=num_samples,
    )
    logger.info("latent quality: %s", quality)
    return quality
