"""``polyfuse train-generator``: fit a latent generator (gan, diffusion) on a trained model and save it in the model folder."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import quiet_option


@cli.command("train-generator")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse train'; the generator is saved under its generators/ folder.")
@click.option("--generator", "generator_type", required=True, help="Generator type to fit, for example gan or diffusion ('polyfuse plugins' lists them).")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSONL or CSV manifest of training records; usually the one the model was trained on.")
@click.option("--name", help="Folder name under generators/ (lowercase, digits, '_' and '-'). Default: the generator type.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSON file with fields of the generator's config (for example learning_rate, hidden_dim).")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training records. Default: 300.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per training step. Default: 256.")
@click.option("--seed", type=int, help="Seed of initialisation, shuffling and every training draw. Default: 0.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Training steps between checkpoints; one is also written after each epoch. Default: 500.")
@click.option("--threads", type=click.IntRange(min=0), help="Torch CPU threads; 0 keeps torch's default.")
@click.option("--device", help="Torch device, for example cpu or cuda. Default: cpu.")
@click.option("--skip-invalid", is_flag=True, help="Skip records whose files are missing or unreadable, reporting each one, instead of stopping.")
@click.option("--restart", is_flag=True, help="Ignore an existing checkpoint of this generator and train from scratch.")
@quiet_option()
def train_generator_command(model_dir, generator_type, manifest, name, config_path, epochs, batch_size, seed, checkpoint_every, threads, device, skip_invalid, restart, quiet) -> None:
    """Fit a --generator on the latents that --model gives for --manifest.

    A checkpoint is written every --checkpoint-every steps and after each epoch; running
    the same command again resumes from it.
    """
    from ..config import config_from_dict, load_config_file
    from ..generation import GeneratorTrainingConfig, train_generator
    from ..generation.training import replace_training
    from ..plugins import get_host

    generator_class = get_host().generators.get(generator_type)
    config = config_from_dict(generator_class.config_class, load_config_file(config_path), str(config_path)) if config_path else None
    training = replace_training(
        GeneratorTrainingConfig(),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        checkpoint_every=checkpoint_every,
        num_threads=threads,
        device=device,
    )
    output = train_generator(
        model_dir, generator_type, manifest, config=config, training=training, name=name, skip_invalid=skip_invalid, resume=not restart, progress=not quiet
    )
    for skipped in output.skipped:
        click.echo(f"skipped {skipped.id}: {skipped.error}", err=True)
    final = output.fit.history[-1] if output.fit.history else {}
    terms = ", ".join(f"{key} {value:.4f}" for key, value in sorted(final.items()))
    resumed = f", resumed from step {output.fit.resumed_from_step}" if output.fit.resumed_from_step is not None else ""
    click.echo(f"Saved generator '{output.folder.name}' ({generator_type}) to {output.folder} ({output.fit.steps} steps{resumed}; last epoch: {terms})")
    if output.fit.diagnostics:
        click.echo("Diagnostics: " + ", ".join(f"{key} {value}" for key, value in output.fit.diagnostics.items()))
