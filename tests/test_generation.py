"""The generation API and CLI: conditions from any modality, outputs and files per modality, seeds, cancellation."""

import json

import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner
from PIL import Image

from polyfuse.config import config_from_dict
from polyfuse.errors import CheckpointError
from polyfuse.generation import GenerationPipeline, GeneratorTrainingConfig, save_generation, train_generator
from polyfuse.generator import GenerationCancelled
from polyfuse.plugins import get_host
from polyfuse.training import RunConfig, train

from generation_fixtures import FIELDS, TINY_DIFFUSION, TINY_GAN, tiny_multimodal_config, write_tiny_multimodal_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model with every built-in modality, and a fitted gan and diffusion generator."""
    folder = tmp_path_factory.mktemp("generation")
    manifest = write_tiny_multimodal_dataset(folder / "data")
    train(manifest, folder / "model", RunConfig.from_dict(tiny_multimodal_config(epochs=1)), progress=False)
    training = GeneratorTrainingConfig(epochs=2, batch_size=8)
    for kind, settings in (("diffusion", TINY_DIFFUSION), ("gan", TINY_GAN)):
        config = config_from_dict(get_host().generators.get(kind).config_class, settings)
        train_generator(folder / "model", kind, manifest, config=config, training=training, progress=False)
    return folder / "model", folder / "data"


def cli():
    from polyfuse.cli import generate, train_generator  # noqa: F401 - importing registers the commands
    from polyfuse.cli.main import cli as root

    return root


# -- outputs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vae", "gan", "diffusion"])
def test_every_modality_has_outputs_and_files(trained, tmp_path, name):
    model_dir, data = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator=name)
    output = pipeline({"text": "two", "image": str(data / "images" / "2.png")}, num_samples=3, seed=0)
    assert output.latents.shape == (3, 4)
    assert output.condition_fields == ("text", "image")
    assert output.outputs["image"].data.shape == (3, 1, 16, 16)
    assert output.outputs["audio"].data.shape == (3, 1, 1000)  # 0.25 s at 4 kHz
    assert output.outputs["sensor"].data.shape == (3, 4, 16)  # 3 channels and the observed mask
    assert output.outputs["text"].data.shape[0] == 3

    written = save_generation(output, pipeline.model, tmp_path / "out", inputs={"text": "two"}, model_dir=model_dir)
    names = {field: sorted(path.name for path in paths) for field, paths in written.files.items()}
    assert names["image"] == ["000.png", "001.png", "002.png"]
    assert names["audio"] == ["000.wav", "001.wav", "002.wav"]
    assert names["sensor"] == ["000.npy", "000.png", "001.npy", "001.png", "002.npy", "002.png"]
    assert names["text"] == ["000.txt", "001.txt", "002.txt"]
    assert Image.open(tmp_path / "out" / "image" / "000.png").size == (16, 16)
    samples, rate = soundfile.read(tmp_path / "out" / "audio" / "000.wav")
    assert (samples.shape, rate) == ((1000,), 4000)
    assert np.load(tmp_path / "out" / "sensor" / "000.npy").shape == (16, 3)
    assert Image.open(tmp_path / "out" / "sensor" / "000.png").format == "PNG"
    assert (tmp_path / "out" / "text" / "000.txt").read_text(encoding="utf-8").endswith("\n")

    record = json.loads(written.record.read_text())
    assert record["generator"] == name
    assert record["seed"] == 0
    assert record["inputs"] == {"text": "two"}
    assert record["condition_fields"] == ["text", "image"]
    assert record["targets"] == list(FIELDS)
    assert record["model_fingerprint"] == pipeline.model.fingerprint
    assert record["steps"] == (TINY_DIFFUSION["num_inference_steps"] if name == "diffusion" else 1)


def test_targets_select_fields(trained):
    model_dir, data = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator="diffusion")
    output = pipeline({"audio": str(data / "audio" / "1.wav")}, targets=["sensor"], num_samples=2, seed=0, num_inference_steps=3, sampler="dpm")
    assert list(output.outputs) == ["sensor"]
    assert output.options == {"num_inference_steps": 3, "guidance_scale": 2.0, "sampler": "dpm"}
    assert output.steps == 3


@pytest.mark.parametrize("name", ["vae", "gan", "diffusion"])
def test_same_seed_gives_same_output(trained, name):
    model_dir, data = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator=name)
    inputs = {"sensor": str(data / "sensor" / "0.npy")}
    first = pipeline(inputs, num_samples=4, seed=7, temperature=0.5)
    second = pipeline(inputs, num_samples=4, seed=7, temperature=0.5)
    other = pipeline(inputs, num_samples=4, seed=8, temperature=0.5)
    assert torch.equal(first.latents, second.latents)
    for field in FIELDS:
        assert torch.equal(first.outputs[field].data, second.outputs[field].data), field
    assert not torch.equal(first.latents, other.latents)

    # A torch.Generator in the same state gives the same samples as the seed.
    from_generator = pipeline(inputs, num_samples=4, generator=torch.Generator().manual_seed(7), temperature=0.5)
    assert torch.equal(from_generator.latents, first.latents)
    assert from_generator.seed is None


def test_drawn_seed_is_recorded_and_reproduces(trained):
    model_dir, _ = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator="gan")
    output = pipeline(None, targets=["image"], num_samples=2)
    assert isinstance(output.seed, int)
    again = pipeline(None, targets=["image"], num_samples=2, seed=output.seed)
    assert torch.equal(output.outputs["image"].data, again.outputs["image"].data)


def test_callback_cancels_generation(trained):
    model_dir, _ = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator="diffusion")
    steps = []
    with pytest.raises(GenerationCancelled) as caught:
        pipeline(None, num_samples=2, seed=0, num_inference_steps=4, callback=lambda step, total: steps.append(step) or step < 2)
    assert steps == [1, 2]
    assert caught.value.completed_steps == 2


# -- errors ----------------------------------------------------------------------


def test_arguments_are_checked_before_work(trained):
    model_dir, _ = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator="diffusion")
    with pytest.raises(ValueError, match=r"unknown modality field\(s\) 'video'; this model has: image, audio, sensor, text"):
        pipeline(None, targets=["video"])
    with pytest.raises(ValueError, match="pass either seed or generator, not both"):
        pipeline(None, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"num_inference_steps is 5000, more than the 100 timesteps"):
        pipeline(None, num_inference_steps=5000)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 9223372036854775807\], got -1"):
        pipeline(None, seed=-1)


def test_missing_generator_names_the_training_command(trained):
    model_dir, _ = trained
    with pytest.raises(CheckpointError) as caught:
        GenerationPipeline.from_pretrained(model_dir, generator="gan-large")
    message = str(caught.value)
    assert "no generator 'gan-large' is saved" in message
    assert "saved: diffusion, gan" in message
    assert "usable without training: vae" in message
    assert "polyfuse train-generator --model" in message



def test_unregistered_generator_lists_types(trained):
    model_dir, _ = trained
    with pytest.raises(CheckpointError) as caught:
        GenerationPipeline.from_pretrained(model_dir, generator="flow")
    message = str(caught.value)
    assert "no generator type of that name is installed" in message
    assert "--generator TYPE --name flow" in message
    assert "TYPE one of: diffusion, gan" in message


def test_missing_input_file_has_no_skip_hint(trained, tmp_path):
    from polyfuse.errors import InvalidRecordError

    model_dir, _ = trained
    pipeline = GenerationPipeline.from_pretrained(model_dir, generator="vae")
    with pytest.raises(InvalidRecordError) as caught:
        pipeline({"image": str(tmp_path / "missing.png")}, num_samples=1, seed=0)
    message = str(caught.value)
    assert "file not found" in message
    assert "skip" not in message


def test_encode_skips_invalid_records_on_request(trained, tmp_path, monkeypatch):
    from polyfuse import MultimodalVAE
    from polyfuse.errors import InvalidRecordError

    model_dir, _ = trained
    model = MultimodalVAE.from_pretrained(model_dir)
    monkeypatch.chdir(tmp_path)
    records = [{"text": "two"}, {"image": "missing.png"}]
    with pytest.raises(InvalidRecordError) as caught:
        model.encode(records)
    assert f"resolved against {tmp_path}" in str(caught.value)
    assert "pass skip_invalid=True" in str(caught.value)
    output = model.encode(records, skip_invalid=True)
    assert output.mean.shape[0] == 1
    assert len(output.skipped) == 1


# -- command line ----------------------------------------------------------------


def test_cli_generate_writes_files_and_record(trained, tmp_path):
    model_dir, data = trained
    out = tmp_path / "samples"
    arguments = [
        "generate", "--model", str(model_dir), "--generator", "diffusion", "--from", "text=one",
        "--from", f"audio={data / 'audio' / '1.wav'}", "--to", "image", "--to", "sensor", "--n", "2", "--seed", "0",
        "--out", str(out), "--guidance-scale", "3", "--steps", "4", "--sampler", "ddim",
    ]
    result = CliRunner().invoke(cli(), arguments)
    assert result.exit_code == 0, result.output
    assert "Wrote 2 samples of image, sensor from text, audio" in result.output
    record = json.loads((out / "generation.json").read_text())
    assert record["options"] == {"num_inference_steps": 4, "guidance_scale": 3.0, "sampler": "ddim"}
    assert record["steps"] == 4
    assert record["seed"] == 0
    assert record["inputs"]["text"] == "one"
    assert sorted(record["files"]) == ["image", "sensor"]
    assert (out / "image" / "001.png").is_file()

    # The same command again writes the same files.
    first = (out / "sensor" / "000.npy").read_bytes()
    assert CliRunner().invoke(cli(), arguments).exit_code == 0
    assert (out / "sensor" / "000.npy").read_bytes() == first


def test_cli_generate_unconditional_all_fields(trained, tmp_path):
    model_dir, _ = trained
    result = CliRunner().invoke(cli(), ["generate", "--model", str(model_dir), "--out", str(tmp_path / "out"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "unconditionally" in result.output
    assert sorted(json.loads((tmp_path / "out" / "generation.json").read_text())["files"]) == sorted(FIELDS)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "num_inference_steps must be at least 1, got 0; pass a value in [1, 100]"),
        (["--steps", "101"], "num_inference_steps is 101, more than the 100 timesteps"),
        (["--from", "image"], "expected FIELD=VALUE"),
        (["--to", "video"], "unknown field(s) video"),
    ],
)
def test_cli_generate_reports_bad_options(trained, tmp_path, extra, message):
    model_dir, _ = trained
    result = CliRunner().invoke(cli(), ["generate", "--model", str(model_dir), "--generator", "diffusion", "--out", str(tmp_path / "out"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_gan_rejects_diffusion_options(trained, tmp_path):
    model_dir, _ = trained
    result = CliRunner().invoke(cli(), ["generate", "--model", str(model_dir), "--generator", "gan", "--out", str(tmp_path / "out"), "--steps", "5"])
    assert result.exit_code == 2
    assert "generator 'gan' does not accept option(s) num_inference_steps; accepted options: none" in result.output


def test_cli_train_generator_resumes(trained, tmp_path):
    model_dir, data = trained
    config = tmp_path / "gan.json"
    config.write_text(json.dumps(TINY_GAN))
    arguments = [
        "train-generator", "--model", str(model_dir), "--generator", "gan", "--manifest", str(data / "train.jsonl"),
        "--name", "gan-cli", "--config", str(config), "--epochs", "1", "--batch-size", "8", "-q",
    ]
    first = CliRunner().invoke(cli(), arguments)
    assert first.exit_code == 0, first.output
    assert "Saved generator 'gan-cli' (gan)" in first.output
    assert "(3 steps;" in first.output
    assert "Diagnostics: mode_coverage" in first.output

    arguments[arguments.index("--epochs") + 1] = "2"
    second = CliRunner().invoke(cli(), arguments)
    assert second.exit_code == 0, second.output
    assert "(6 steps, resumed from step 3;" in second.output


def test_cli_help_documents_every_option():
    for command in ("generate", "train-generator"):
        result = CliRunner().invoke(cli(), [command, "--help"])
        assert result.exit_code == 0
        lines = result.output.splitlines()
        for index, line in enumerate(lines):
            if line.strip().startswith("--") and len(line.split("  ")) == 1 and index + 1 < len(lines):
                assert lines[index + 1].strip(), f"{command}: option without help: {line}"
