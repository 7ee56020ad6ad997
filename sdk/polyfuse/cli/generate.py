"""``polyfuse generate``: sample any modalities from a model's generator, optionally conditioned on others, and write files."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import device_option, quiet_option, split_fields


def parse_inputs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """Turn repeated ``--from FIELD=VALUE`` into a dict, rejecting a missing '=' or a field given twice."""
    inputs: dict[str, str] = {}
    for value in values:
        name, separator, field_value = value.partition("=")
        name = name.strip()
        if not separator or not name or field_value == "":
            raise click.BadParameter(f"expected FIELD=VALUE, for example image=seven.png or text=\"a seven\", got {value!r}", param=param)
        if name in inputs:
            raise click.BadParameter(f"field '{name}' is given twice; give each field once", param=param)
        inputs[name] = field_value
    return inputs


@cli.command("generate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse train'.")
@click.option("--generator", "generator_name", default="vae", show_default=True, help="Generator: 'vae' (needs no training) or a name trained with 'polyfuse train-generator' (gan, diffusion).")
@click.option("--from", "inputs", multiple=True, callback=parse_inputs, metavar="FIELD=VALUE", help="Condition on this modality: a file path (relative to the current folder), or the text itself for text fields. Repeat for several; omit to sample unconditionally.")
@click.option("--to", "targets", multiple=True, callback=split_fields, metavar="FIELD[,FIELD...]", help="Modalities to generate; repeat or separate with commas. Default: every field of the model.")
@click.option("--n", "num_samples", default=1, show_default=True, type=click.IntRange(min=1), help="Number of samples.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of all sampling; the same seed gives the same files on the same machine. Default: a random seed, recorded in generation.json.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write one subfolder of files per modality and generation.json into.")
@click.option("--guidance-scale", type=float, help="Classifier-free guidance scale of the diffusion generator (unitless, >= 0; 1 is plain conditioning). Default: the generator's config.")
@click.option("--steps", "num_inference_steps", type=int, help="Denoising steps of the diffusion generator, from 1 to its training timesteps. Default: the generator's config.")
@click.option("--sampler", type=click.Choice(["ddim", "dpm"]), help="Diffusion sampler: DDIM or DPM-Solver++. Default: the generator's config.")
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Decoder temperature (unitless): 0 writes each decoder's most likely output, larger values sample its likelihood.")
@device_option()
@quiet_option()
def generate_command(model_dir, generator_name, inputs, targets, num_samples, seed, out, guidance_scale, num_inference_steps, sampler, temperature, device, quiet) -> None:
    """Generate --n samples of the --to modalities from --model and write them to --out.

    Images are written as PNG, audio as WAV, sensor series as NPY plus a PNG plot, and
    text as TXT. generation.json records the inputs, the generator, the seed, the options
    and steps actually used, and the model fingerprint.
    """
    from ..generation import GenerationPipeline, save_generation

    pipeline = GenerationPipeline.from_pretrained(model_dir, generator=generator_name, device=device)
    model = pipeline.model
    unknown = [name for name in list(inputs) + list(targets or ()) if name not in model.fields]
    if unknown:
        raise click.UsageError(f"unknown field(s) {', '.join(unknown)}; the model in {model_dir} has: {', '.join(model.fields)}")
    requested = {"guidance_scale": guidance_scale, "num_inference_steps": num_inference_steps, "sampler": sampler}
    options = {key: value for key, value in requested.items() if value is not None}
    try:
        pipeline.generator.resolve_sample_options(**options)
    except (TypeError, ValueError) as error:
        raise click.UsageError(f"{error} (options map to --guidance-scale, --steps and --sampler)") from error

    output = pipeline(inputs or None, targets=targets, num_samples=num_samples, seed=seed, temperature=temperature, **options)
    written = save_generation(output, model, out, inputs=inputs, model_dir=model_dir)
    condition = f"from {', '.join(output.condition_fields)}" if output.condition_fields else "unconditionally"
    click.echo(
        f"Wrote {output.num_samples} samples of {', '.join(output.outputs)} {condition} to {written.folder} "
        f"(generator {output.generator}, seed {output.seed}, {output.steps} steps)"
    )
