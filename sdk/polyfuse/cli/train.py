"""``polyfuse train``: train a multimodal VAE on a manifest and save it."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import modalities_option, quiet_option


@cli.command("train")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSONL or CSV manifest of training records.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the model and its checkpoint; rerunning resumes.")
@modalities_option("Fields to train on. Default: the config's modalities, else every manifest key named after a modality.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSON run config with model, training and modalities sections.")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training records (overrides the config).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per optimizer step (overrides the config).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), help="AdamW step size (overrides the config).")
@click.option("--seed", type=int, help="Seed of initialisation, shuffling and sampling (overrides the config).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Optimizer steps between checkpoints (overrides the config).")
@click.option("--threads", type=click.IntRange(min=0), help="Torch CPU threads; 0 keeps torch's default (overrides the config).")
@click.option("--device", help="Torch device, for example cpu or cuda (overrides the config).")
@click.option("--skip-invalid", is_flag=True, help="Skip records whose files are missing or unreadable, reporting each one, instead of stopping.")
@click.option("--restart", is_flag=True, help="Ignore an existing checkpoint in --out and train from scratch.")
@quiet_option()
def train_command(manifest, out, fields, config_path, epochs, batch_size, learning_rate, seed, checkpoint_every, threads, device, skip_invalid, restart, quiet) -> None:
    """Train a model on the records of --manifest and save it to --out.

    Records may lack any subset of modalities. A checkpoint is written every
    --checkpoint-every steps and at the end of each epoch; running the same command again
    resumes from it.
    """
    from ..training import RunConfig, train

    run_config = RunConfig.from_file(config_path) if config_path else RunConfig()
    run_config = run_config.with_training(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        checkpoint_every=checkpoint_every,
        num_threads=threads,
        device=device,
    )
    output = train(manifest, out, run_config, fields=fields, skip_invalid=skip_invalid, resume=not restart, progress=not quiet)
    for skipped in output.skipped:
        click.echo(f"skipped {skipped.id}: {skipped.error}", err=True)
    final = output.history[-1] if output.history else {}
    click.echo(
        f"Saved model with fields {', '.join(output.model.fields)} to {out} "
        f"({output.steps} steps, final loss {final.get('loss', float('nan')):.3f}, {len(output.skipped)} records skipped)"
    )
