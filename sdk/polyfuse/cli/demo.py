"""``polyfuse demo``: the main job, from data set to HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import quiet_option


@cli.command("demo")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with the digits sources (mnist/, fsdd/, pendigits/); without it, scikit-learn's bundled digits are used.")
@click.option("--out", default=Path("runs/demo"), show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the data set, model, index and report.")
@click.option("--epochs", type=click.IntRange(min=1), help="VAE training epochs (default: the demo schedule of the data set).")
@click.option("--generator-epochs", type=click.IntRange(min=1), help="Diffusion generator training epochs (default: the demo schedule).")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0), help="Torch CPU threads; 0 keeps torch's default.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of pairing, training, sampling and evaluation.")
@quiet_option()
def demo_command(data_dir, out, epochs, generator_epochs, threads, seed, quiet) -> None:
    """Build a data set, train, index, retrieve, generate, evaluate and write an HTML report.

    Runs in a few minutes on two CPU cores and needs no download. Open the printed
    report.html in a browser.
    """
    from ..demo import DemoConfig, run_demo

    config = DemoConfig(data_dir=data_dir, out=out, epochs=epochs, generator_epochs=generator_epochs, threads=threads, seed=seed)
    output = run_demo(config, progress=not quiet, on_step=lambda name: click.echo(f"== {name}", err=True))
    click.echo(f"Report: {output.report}")
    click.echo(f"Figures: {output.results}")
    click.echo(f"Finished in {output.seconds:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in output.timings.items())})")
