"""The built-in generators (vae, gan, diffusion): registration, training, sampling checks, persistence and resume."""

import json
import logging
import signal
import subprocess
import sys

import pytest
import torch

from polyfuse.config import config_from_dict
from polyfuse.errors import CheckpointError
from polyfuse.fusion import Experts
from polyfuse.generation import GeneratorTrainer, GeneratorTrainingConfig, LatentDataset, load_generator, save_generator, train_generator
from polyfuse.generation.store import CHECKPOINT_NAME, generator_folder
from polyfuse.generator import Condition, GenerationCancelled
from polyfuse.model import MultimodalVAE
from polyfuse.plugins import get_host
from polyfuse.posterior import DiagonalGaussian
from polyfuse.training import RunConfig, train
from polyfuse_generators import DiffusionConfig, DiffusionGenerator, GANConfig, GANGenerator, VAEPriorConfig, VAEPriorGenerator

from conftest import subprocess_env
from generation_fixtures import TINY_DIFFUSION, TINY_GAN, tiny_multimodal_config, write_tiny_multimodal_dataset

TRAINING = GeneratorTrainingConfig(epochs=2, batch_size=8, checkpoint_every=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny four-modality model with a fitted gan and diffusion generator, shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("generators")
    manifest = write_tiny_multimodal_dataset(folder / "data")
    train(manifest, folder / "model", RunConfig.from_dict(tiny_multimodal_config(epochs=1)), progress=False)
    for kind, settings in (("diffusion", TINY_DIFFUSION), ("gan", TINY_GAN)):
        config = config_from_dict(get_host().generators.get(kind).config_class, settings)
        train_generator(folder / "model", kind, manifest, config=config, training=TRAINING, progress=False)
    return folder / "model", manifest


def image_condition(model: MultimodalVAE, rows: int) -> Condition:
    return Condition(DiagonalGaussian(torch.full((rows, model.latent_dim), 0.5), torch.full((rows, model.latent_dim), -1.0)), ("image",))


# -- registration --------------------------------------------------------------


def test_generators_registered_through_entry_point():
    host = get_host()
    assert {"vae", "gan", "diffusion"} <= set(host.generators.names())
    for name in ("vae", "gan", "diffusion"):
        entry = host.generators.entry(name)
        assert entry.plugin == "generators"
        assert entry.distribution == "polyfuse"
    assert sorted(host.plugins["generators"].registered["generators"]) == ["diffusion", "gan", "vae"]


def test_only_vae_needs_no_training():
    assert VAEPriorGenerator.trainable is False
    assert GANGenerator.trainable
    assert DiffusionGenerator.trainable


# -- sampling options ------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, message",
    [
        (0, "num_inference_steps must be at least 1, got 0; pass a value in [1, 100]"),
        (-5, "num_inference_steps must be at least 1, got -5; pass a value in [1, 100]"),
        (101, "num_inference_steps is 101, more than the 100 timesteps this generator was trained with; pass a value in [1, 100]"),
        (2.5, "num_inference_steps must be an integer in [1, 100], got 2.5 (float)"),
        (True, "num_inference_steps must be an integer in [1, 100], got True (bool)"),
    ],
)
def test_diffusion_step_counts_are_validated(steps, message):
    generator = DiffusionGenerator(config_from_dict(DiffusionConfig, TINY_DIFFUSION), 4)
    with pytest.raises(ValueError) as caught:
        generator.sample(2, num_inference_steps=steps)
    assert str(caught.value) == message


def test_diffusion_config_validates_default_steps():
    with pytest.raises(ValueError, match=r"num_inference_steps is 2000, more than the 1000 timesteps"):
        DiffusionConfig(num_inference_steps=2000)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"guidance_scale": -1.0}, "guidance_scale must be a finite number >= 0"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 0"),
        ({"sampler": "euler"}, "sampler must be one of ddim, dpm, got 'euler'"),
    ],
)
def test_diffusion_options_are_validated(options, message):
    generator = DiffusionGenerator(config_from_dict(DiffusionConfig, TINY_DIFFUSION), 4)
    with pytest.raises(ValueError, match=message):
        generator.resolve_sample_options(**options)


def test_unknown_option_lists_accepted_ones():
    with pytest.raises(TypeError, match=r"generator 'gan' does not accept option\(s\) num_inference_steps; accepted options: none"):
        GANGenerator(config_from_dict(GANConfig, TINY_GAN), 4).sample(2, num_inference_steps=5)
    with pytest.raises(TypeError, match=r"accepted options: guidance_scale, num_inference_steps, sampler"):
        DiffusionGenerator(config_from_dict(DiffusionConfig, TINY_DIFFUSION), 4).sample(2, steps=5)


def test_condition_rows_must_match_samples():
    generator = VAEPriorGenerator(None, 4)
    condition = Condition(DiagonalGaussian(torch.zeros(3, 4), torch.zeros(3, 4)), ("image",))
    with pytest.raises(ValueError, match=r"condition has 3 rows but num_samples is 2"):
        generator.sample(2, condition)
    with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1, got 0"):
        generator.sample(0)


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
@pytest.mark.parametrize("steps", [1, 3, 100])
def test_diffusion_samplers_give_finite_latents(trained, sampler, steps):
    model_dir, _ = trained
    generator = load_generator(model_dir, "diffusion")
    model = MultimodalVAE.from_pretrained(model_dir)
    for condition in (None, image_condition(model, 3)):
        latents = generator.sample(3, condition, generator=torch.Generator().manual_seed(0), sampler=sampler, num_inference_steps=steps)
        assert latents.shape == (3, model.latent_dim)
        assert torch.isfinite(latents).all()


def test_vae_generator_uses_prior_and_posterior():
    condition = Condition(DiagonalGaussian(torch.full((4, 3), 2.0), torch.full((4, 3), -20.0)), ("image",))
    mean_generator = VAEPriorGenerator(VAEPriorConfig(posterior="mean"), 3)
    assert torch.equal(mean_generator.sample(4, condition), condition.posterior.mean)
    drawn = VAEPriorGenerator(None, 3).sample(4, condition, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(drawn, condition.posterior.mean, atol=1e-3, rtol=0)  # variance exp(-20)
    prior = VAEPriorGenerator(None, 3).sample(5000, generator=torch.Generator().manual_seed(0))
    assert abs(float(prior.mean())) < 0.05
    assert abs(float(prior.std()) - 1.0) < 0.05


# -- cancellation ----------------------------------------------------------------


def test_callback_cancels_diffusion_between_steps(trained):
    model_dir, _ = trained
    generator = load_generator(model_dir, "diffusion")
    reported = []

    def stop_after_three(step, total):
        reported.append((step, total))
        return step < 3

    with pytest.raises(GenerationCancelled) as caught:
        generator.sample(2, callback=stop_after_three, num_inference_steps=10)
    assert reported == [(1, 10), (2, 10), (3, 10)]
    assert (caught.value.completed_steps, caught.value.total_steps) == (3, 10)
    assert str(caught.value) == "generation cancelled by the step callback after step 3 of 10"


@pytest.mark.parametrize("name", ["gan", "vae"])
def test_callback_cancels_one_step_generators(trained, name):
    model_dir, _ = trained
    generator = load_generator(model_dir, name) if name == "gan" else VAEPriorGenerator(None, 4)
    with pytest.raises(GenerationCancelled, match="after step 1 of 1"):
        generator.sample(2, callback=lambda step, total: False)
    assert generator.sample(2, callback=lambda step, total: None).shape == (2, 4)


# -- persistence -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["gan", "diffusion"])
def test_save_and_load_round_trip(trained, tmp_path, name):
    model_dir, _ = trained
    loaded = load_generator(model_dir, name)
    saved = json.loads((generator_folder(model_dir, name) / "config.json").read_text())
    assert saved["type"] == name
    assert saved["model_fingerprint"] == MultimodalVAE.from_pretrained(model_dir).fingerprint
    assert saved["fit"]["steps"] == 6  # 24 records, batch 8, 2 epochs
    assert (generator_folder(model_dir, name) / saved["weights"]).is_file()

    # A copy saved under another name samples exactly like the original.
    copy_dir = tmp_path / "copy"
    (copy_dir).mkdir()
    (copy_dir / "config.json").write_text((model_dir / "config.json").read_text())
    save_generator(loaded, copy_dir, saved["model_fingerprint"], name=f"{name}-copy")
    reloaded = load_generator(copy_dir, f"{name}-copy")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    first = loaded.sample(4, generator=torch.Generator().manual_seed(1))
    second = reloaded.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second)


def test_load_refuses_generator_of_other_weights(trained):
    model_dir, _ = trained
    with pytest.raises(CheckpointError, match=r"was fitted on model weights [0-9a-f]{16}, but the model now has weights 0000000000000000"):
        load_generator(model_dir, "gan", fingerprint="0" * 64)


def test_damaged_generator_weights_are_detected(trained, tmp_path):
    model_dir, _ = trained
    copy_dir = tmp_path / "model"
    copy_dir.mkdir()
    (copy_dir / "config.json").write_text((model_dir / "config.json").read_text())
    folder = save_generator(load_generator(model_dir, "gan"), copy_dir, MultimodalVAE.from_pretrained(model_dir).fingerprint)
    weights = next(folder.glob("generator-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_generator(copy_dir, "gan")


def test_invalid_generator_name_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"generator name must match .* got 'Bad/Name'"):
        generator_folder(tmp_path, "Bad/Name")


# -- training --------------------------------------------------------------------


def test_gan_reports_collapse_as_warning_and_output(trained, caplog):
    model_dir, manifest = trained
    config = config_from_dict(GANConfig, {**TINY_GAN, "min_mode_coverage": 1.0, "min_diversity_ratio": 10.0})
    with caplog.at_level(logging.WARNING, logger="polyfuse_generators.gan"):
        output = train_generator(model_dir, "gan", manifest, config=config, training=TRAINING, name="gan-strict", progress=False)
    diagnostics = output.fit.diagnostics
    assert diagnostics["collapsed"] is True
    assert 0 <= diagnostics["mode_coverage"] <= 1
    assert diagnostics["diversity_ratio"] < 10.0
    assert any("GAN samples look collapsed" in record.getMessage() for record in caplog.records)
    saved = json.loads((output.folder / "config.json").read_text())
    assert saved["fit"]["diagnostics"] == diagnostics


def test_vae_generator_has_nothing_to_train(trained):
    model_dir, manifest = trained
    with pytest.raises(ValueError, match=r"generator 'vae' has nothing to train; use it directly"):
        train_generator(model_dir, "vae", manifest, progress=False)


def two_cluster_latents(count: int = 64) -> LatentDataset:
    """One modality whose experts sit near +3 or -3 on the first of 2 dimensions, by label."""
    labels = [index % 2 for index in range(count)]
    sign = torch.tensor([1.0 if label else -1.0 for label in labels])
    mean = torch.zeros(count, 1, 2)
    mean[:, 0, 0] = 3.0 * sign
    logvar = torch.full((count, 1, 2), -6.0)
    return LatentDataset(Experts(mean, logvar, torch.ones(count, 1, dtype=torch.bool), ("image",)), labels, "poe")


@pytest.mark.parametrize(
    "generator_class, settings, epochs",
    [
        (DiffusionGenerator, {**TINY_DIFFUSION, "learning_rate": 3e-3, "ema_decay": 0.0, "condition_dropout": 0.2}, 60),
        (GANGenerator, {**TINY_GAN, "learning_rate": 1e-3, "condition_dropout": 0.2}, 150),
    ],
    ids=["diffusion", "gan"],
)
def test_conditional_samples_follow_condition(generator_class, settings, epochs):
    torch.manual_seed(0)
    generator = generator_class(config_from_dict(generator_class.config_class, settings), 2)
    latents = two_cluster_latents()
    GeneratorTrainer(generator, latents, GeneratorTrainingConfig(epochs=epochs, batch_size=32), progress=False).fit(resume=False)
    generator.eval()
    for sign in (1.0, -1.0):
        mean = torch.tensor([[3.0 * sign, 0.0]]).repeat(50, 1)
        condition = Condition(DiagonalGaussian(mean, torch.full((50, 2), -6.0)), ("image",))
        samples = generator.sample(50, condition, generator=torch.Generator().manual_seed(0))
        assert float((samples[:, 0] * sign > 0).float().mean()) >= 0.9, f"condition {sign}: {samples[:5]}"
    unconditional = generator.sample(200, generator=torch.Generator().manual_seed(0))
    share_positive = float((unconditional[:, 0] > 0).float().mean())
    assert 0.1 < share_positive < 0.9, f"unconditional samples cover one cluster only: {share_positive}"


KILL_SCRIPT = """
import os, signal, sys
from polyfuse.config import config_from_dict
from polyfuse.generation import GeneratorTrainingConfig, train_generator
from polyfuse_generators import DiffusionConfig

model_dir, manifest, kill_step, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import json
def on_step(state, values):
    if state.step == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
config = config_from_dict(DiffusionConfig, json.loads(settings))
training = GeneratorTrainingConfig(epochs=3, batch_size=8, checkpoint_every=2)
train_generator(model_dir, "diffusion", manifest, config=config, training=training, name="killed", progress=False, on_step=on_step)
"""


def test_killed_training_resumes_to_same_weights(trained, tmp_path):
    model_dir, manifest = trained
    config = config_from_dict(DiffusionConfig, TINY_DIFFUSION)
    training = GeneratorTrainingConfig(epochs=3, batch_size=8, checkpoint_every=2)
    reference = train_generator(model_dir, "diffusion", manifest, config=config, training=training, name="reference", progress=False)

    # 24 records in batches of 8 give 9 steps; a kill after step 5 leaves the checkpoint of step 4.
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    arguments = [sys.executable, str(script), str(model_dir), str(manifest), "5", json.dumps(TINY_DIFFUSION)]
    completed = subprocess.run(arguments, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == -signal.SIGKILL, completed.stderr
    checkpoint = generator_folder(model_dir, "killed") / CHECKPOINT_NAME
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        assert json.loads(handle.metadata()["state"])["step"] == 4
    assert not (generator_folder(model_dir, "killed") / "config.json").exists()

    resumed = train_generator(model_dir, "diffusion", manifest, config=config, training=training, name="killed", progress=False)
    assert resumed.fit.resumed_from_step == 4
    assert resumed.fit.steps == reference.fit.steps == 9
    expected = reference.generator.state_dict()
    for name, value in resumed.generator.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=f"{name} differs")


def test_resume_with_other_settings_is_refused(trained):
    model_dir, manifest = trained
    config = config_from_dict(DiffusionConfig, TINY_DIFFUSION)
    train_generator(model_dir, "diffusion", manifest, config=config, training=TRAINING, name="other", progress=False)
    other = config_from_dict(DiffusionConfig, {**TINY_DIFFUSION, "learning_rate": 0.01})
    with pytest.raises(CheckpointError, match="was written by a generator run with another config or model; pass --restart"):
        train_generator(model_dir, "diffusion", manifest, config=other, training=TRAINING, name="other", progress=False)
    longer = GeneratorTrainingConfig(epochs=3, batch_size=8, checkpoint_every=2)
    extended = train_generator(model_dir, "diffusion", manifest, config=config, training=longer, name="other", progress=False)
    assert extended.fit.resumed_from_step == 6
    assert extended.fit.steps == 9
    restarted = train_generator(model_dir, "diffusion", manifest, config=other, training=TRAINING, name="other", resume=False, progress=False)
    assert restarted.fit.resumed_from_step is None
