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
    for line in headline(output.results):
        click.echo(line)
    click.echo(f"Report: {output.report}")
    click.echo(f"Metrics (JSON): {output.results}")
    click.echo(f"Finished in {output.seconds:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in output.timings.items())})")


def headline(results_path: Path) -> list[str]:
    """Return a few lines with the main figures of the demo's report.json."""
    import json

    results = json.loads(results_path.read_text(encoding="utf-8"))["results"]
    lines = []
    classification = results.get("classification", {})
    if classification:
        everything = max(classification, key=lambda subset: subset.count("+"))
        lines.append(f"Classification from the fused latent ({everything}), linear probe: {classification[everything]['probe']:.3f}")
    for name, measured in results.get("coherence", {}).get("generators", {}).items():
        # Single-source pairs only; report.html has every subset.
        single = {pair: value for pair, value in measured.get("pairs", {}).items() if "+" not in pair.split("->")[0]}
        pairs = ", ".join(f"{pair} {value:.2f}" for pair, value in single.items())
        lines.append(f"Coherence of generator '{name}' from one modality: {pairs}; joint {measured.get('joint', float('nan')):.2f}")
    cross = [pair for pair in results.get("retrieval", {}).get("pairs", []) if pair["query"] != [pair["target"]] and pair["target"] != "fused"]
    if cross:
        lines.append("Cross-modal retrieval mAP@10: " + ", ".join(f"{'+'.join(pair['query'])} -> {pair['target']} {pair['map_at_10']:.3f}" for pair in cross[:6]))
    return lines
