import itertools

import numpy as np
import pytest
import torch

from polyfuse.errors import ConfigError
from polyfuse.fusion import (
    Experts,
    all_subsets,
    fuse,
    mixture_of_experts,
    mixture_of_products_of_experts,
    product_of_experts,
)


def random_experts(batch=5, count=3, dim=4, seed=0, present=None) -> Experts:
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(batch, count, dim, generator=generator)
    logvar = torch.randn(batch, count, dim, generator=generator)
    if present is None:
        present = torch.rand(batch, count, generator=generator) > 0.4
    return Experts(mean, logvar, present, tuple(f"m{i}" for i in range(count)))


def numpy_product(means, logvars):
    """Closed-form product of Gaussians including the N(0, I) prior expert."""
    precisions = [np.ones_like(means[0])] + [np.exp(-lv) for lv in logvars] if means else [np.ones(1)]
    weighted = [np.zeros_like(precisions[0])] + [m * np.exp(-lv) for m, lv in zip(means, logvars)]
    total = np.sum(precisions, axis=0)
    return np.sum(weighted, axis=0) / total, -np.log(total)


def test_product_of_experts_matches_closed_form():
    experts = random_experts()
    fused = product_of_experts(experts)
    for row in range(experts.mean.shape[0]):
        chosen = experts.present[row].nonzero().flatten().tolist()
        means = [experts.mean[row, i].numpy() for i in chosen]
        logvars = [experts.logvar[row, i].numpy() for i in chosen]
        if not chosen:
            expected_mean, expected_logvar = np.zeros(4), np.zeros(4)
        else:
            expected_mean, expected_logvar = numpy_product(means, logvars)
        np.testing.assert_allclose(fused.mean[row].numpy(), expected_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fused.logvar[row].numpy(), expected_logvar, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["poe", "moe", "mopoe"])
def test_row_without_experts_gets_prior(method):
    experts = random_experts(batch=2, present=torch.zeros(2, 3, dtype=torch.bool))
    fused = fuse(experts, method)
    assert torch.allclose(fused.mean, torch.zeros(2, 4))
    assert torch.allclose(fused.kl(), torch.zeros(2), atol=1e-6)
    assert torch.isfinite(fused.sample()).all()


@pytest.mark.parametrize("method", ["poe", "moe", "mopoe"])
def test_absent_experts_do_not_change_result(method):
    experts = random_experts(seed=3)
    changed = Experts(experts.mean.clone(), experts.logvar.clone(), experts.present, experts.names)
    changed.mean[~experts.present] = 1e3
    changed.logvar[~experts.present] = -5.0
    assert torch.allclose(fuse(experts, method).mean, fuse(changed, method).mean, atol=1e-5)


def test_mixture_of_experts_mean_is_average_of_present():
    experts = random_experts(seed=1)
    fused = mixture_of_experts(experts)
    for row in range(experts.mean.shape[0]):
        chosen = experts.present[row]
        if chosen.any():
            expected = experts.mean[row, chosen].mean(0)
            assert torch.allclose(fused.mean[row], expected, atol=1e-6)


def test_mopoe_matches_enumerated_subsets():
    experts = random_experts(seed=2, count=3)
    fused = mixture_of_products_of_experts(experts)
    for row in range(experts.mean.shape[0]):
        chosen = experts.present[row].nonzero().flatten().tolist()
        if not chosen:
            continue
        subset_means = []
        for size in range(1, len(chosen) + 1):
            for subset in itertools.combinations(chosen, size):
                mean, _ = numpy_product([experts.mean[row, i].numpy() for i in subset], [experts.logvar[row, i].numpy() for i in subset])
                subset_means.append(mean)
        np.testing.assert_allclose(fused.mean[row].numpy(), np.mean(subset_means, axis=0), rtol=1e-5, atol=1e-6)
        assert int((fused.weights[row] > 0).sum()) == len(subset_means)


def test_mixture_sample_picks_components_by_weight():
    experts = random_experts(batch=1, count=2, present=torch.tensor([[True, True]]))
    experts.logvar[:] = -20.0  # near-point masses make the chosen component visible
    experts.mean[0, 0] = 5.0
    experts.mean[0, 1] = -5.0
    fused = mixture_of_experts(Experts(experts.mean.expand(2000, -1, -1), experts.logvar.expand(2000, -1, -1), experts.present.expand(2000, -1), experts.names))
    samples = fused.sample(torch.Generator().manual_seed(0))
    share_positive = (samples[:, 0] > 0).float().mean().item()
    assert 0.45 < share_positive < 0.55


def test_all_subsets_enumerates_power_set():
    subsets = all_subsets(3)
    assert subsets.shape == (8, 3)
    assert subsets[0].sum() == 0
    assert len({tuple(row.tolist()) for row in subsets}) == 8


def test_unknown_method_lists_choices():
    with pytest.raises(ConfigError, match="poe, moe, mopoe"):
        fuse(random_experts(), "sum")


def test_mopoe_rejects_too_many_modalities():
    with pytest.raises(ConfigError, match="at most 10"):
        mixture_of_products_of_experts(random_experts(count=11, batch=1))
