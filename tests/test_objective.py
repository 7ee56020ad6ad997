import torch
import torch.nn.functional as F

from polyfuse.fusion import Experts
from polyfuse.model import ModelConfig, MultimodalVAE
from polyfuse.objective import ObjectiveWeights, alignment_loss, compute_loss, drop_modalities, random_subset
from polyfuse.training import RunConfig

from conftest import tiny_run_config


def test_drop_modalities_never_empties_a_row():
    generator = torch.Generator().manual_seed(0)
    present = torch.rand(500, 4, generator=generator) > 0.3
    for probability in (0.5, 0.9, 0.99):
        keep = drop_modalities(present, probability, generator)
        assert not (keep & ~present).any()
        assert torch.equal(keep.any(dim=1), present.any(dim=1))


def test_drop_modalities_rate_matches_probability():
    present = torch.ones(20000, 3, dtype=torch.bool)
    keep = drop_modalities(present, 0.3, torch.Generator().manual_seed(1))
    # Restoring the last modality of emptied rows (probability 0.3**3) raises the kept share slightly.
    assert abs(keep.float().mean().item() - (0.7 + 0.3**3 / 3)) < 0.01


def test_random_subset_sizes_are_uniform():
    present = torch.ones(30000, 3, dtype=torch.bool)
    subset = random_subset(present, torch.Generator().manual_seed(2))
    sizes = subset.sum(dim=1)
    for size in (1, 2, 3):
        assert abs((sizes == size).float().mean().item() - 1 / 3) < 0.02


def test_random_subset_respects_presence_and_cap():
    generator = torch.Generator().manual_seed(3)
    present = torch.rand(1000, 4, generator=generator) > 0.5
    subset = random_subset(present, generator, max_size=1)
    assert not (subset & ~present).any()
    assert torch.equal(subset.sum(1), present.any(1).long())


def test_alignment_loss_matches_manual_infonce():
    generator = torch.Generator().manual_seed(4)
    mean = torch.randn(6, 2, 5, generator=generator)
    present = torch.ones(6, 2, dtype=torch.bool)
    present[0, 1] = False
    experts = Experts(mean, torch.zeros_like(mean), present, ("a", "b"))
    rows = torch.arange(1, 6)
    first, second = F.normalize(mean[rows, 0], dim=-1), F.normalize(mean[rows, 1], dim=-1)
    logits = first @ second.T / 0.2
    targets = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    assert torch.allclose(alignment_loss(experts, 0.2), expected)


def test_alignment_loss_is_zero_without_pairs():
    mean = torch.randn(4, 2, 3)
    present = torch.tensor([[True, False]] * 4)
    assert alignment_loss(Experts(mean, torch.zeros_like(mean), present, ("a", "b")), 0.1).item() == 0.0


def test_loss_finite_when_rows_lack_everything():
    config = RunConfig.from_dict(tiny_run_config())
    torch.manual_seed(0)
    model = MultimodalVAE(config.build_modalities(), ModelConfig(latent_dim=4))
    image = model.modalities["image"].collate([torch.rand(1, 16, 16), None, None, torch.rand(1, 16, 16)])
    sensor = model.modalities["sensor"].collate([None, torch.rand(4, 16), None, torch.rand(4, 16)])
    weights = ObjectiveWeights(beta=1.0, alignment_weight=1.0, alignment_temperature=0.1, modality_dropout=0.5)
    loss = compute_loss(model, {"image": image, "sensor": sensor}, weights, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.total)
    assert set(loss.terms) == {"nll/image", "nll/sensor", "kl", "alignment"}
    loss.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
