"""``polyfuse eval``: measure a trained model on labelled data and write a JSON file and an HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import modalities_option, quiet_option


@cli.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse train'.")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Labelled test manifest (JSONL or CSV).")
@click.option("--train-manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Labelled training manifest; probes, baselines and the coherence judges are fitted on it.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for report.html, report.json, the index and the judges.")
@modalities_option("Fields to evaluate. Default: every field of the model.")
@click.option("--generators", "generators", multiple=True, help="Generators to evaluate (repeatable). Default: vae and every generator saved with the model.")
@click.option("--skip", "skipped", multiple=True, type=click.Choice(["classification", "robustness", "baselines", "coherence", "retrieval"]), help="Leave out a part (repeatable).")
@click.option("--baseline-epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Training epochs of each supervised baseline.")
@click.option("--classifier-epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Training epochs of each coherence judge classifier.")
@click.option("--conditions", default=500, show_default=True, type=click.IntRange(min=1), help="Test records used as conditions per source set, for coherence.")
@click.option("--joint-samples", default=500, show_default=True, type=click.IntRange(min=1), help="Unconditional samples for joint coherence.")
@click.option("--steps", default=25, show_default=True, type=click.IntRange(min=1), help="Sampling steps of iterative generators (diffusion).")
@click.option("--paired", is_flag=True, help="Records are paired one to one: also report instance recall@K, with each query's own record as the only match.")
@click.option("--examples", default=6, show_default=True, type=click.IntRange(min=1), help="Samples of each kind shown in the report.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of corruptions, sampling and baselines.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, for example cpu or cuda.")
@quiet_option()
def eval_command(model_dir, manifest, train_manifest, out, fields, generators, skipped, baseline_epochs, classifier_epochs, conditions, joint_samples, steps, paired, examples, seed, device, quiet) -> None:
    """Measure a model on labelled data: classification, robustness, baselines, coherence, retrieval.

    Writes report.json with every figure and report.html, a self-contained page with
    tables, plots, sample images, audio players and sensor plots.
    """
    from ..evaluation.suite import EvaluationConfig, load_evaluation_data, run_evaluation
    from ..report.evaluation import build_evaluation_report

    config = EvaluationConfig(
        fields=tuple(fields or ()),
        classification="classification" not in skipped,
        robustness="robustness" not in skipped,
        baselines="baselines" not in skipped,
        coherence="coherence" not in skipped,
        retrieval="retrieval" not in skipped,
        generators=tuple(generators),
        baseline_epochs=baseline_epochs,
        classifier_epochs=classifier_epochs,
        coherence_conditions=conditions,
        joint_samples=joint_samples,
        num_inference_steps=steps,
        paired=paired,
        seed=seed,
    )
    data = load_evaluation_data(model_dir, manifest, train_manifest, config.fields, device=device, progress=not quiet)
    results = run_evaluation(
        data, manifest, out, config, train_manifest=train_manifest, progress=not quiet,
        on_part=None if quiet else (lambda part: click.echo(f"Evaluating {part}...", err=True)),
    )
    html_path, json_path = build_evaluation_report(data, results, examples=examples, seed=seed).write(out)
    for part, reason in results.skipped.items():
        click.echo(f"{part}: skipped, {reason}", err=True)
    click.echo(f"Wrote {html_path} and {json_path}")
