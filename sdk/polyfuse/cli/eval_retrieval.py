"""``polyfuse eval-retrieval``: recall@K and mAP@10 of an index for every query modality and target."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import cli
from .options import device_option, quiet_option, split_fields


@cli.command("eval-retrieval")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse index'.")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSONL or CSV manifest of labelled query records.")
@click.option("--exclude-self", is_flag=True, help="Leave each query's own record (same id) out of its results, for a manifest that is also the indexed gallery.")
@click.option("--paired", is_flag=True, help="Records are paired one to one: also report instance recall@K (the query's own record is the only relevant one).")
@click.option("--queries", "query_sets", multiple=True, metavar="FIELD[+FIELD...]", help="Modalities to query with, fused when joined by '+'. Repeatable. Default: every subset of the indexed fields.")
@click.option("--targets", multiple=True, callback=split_fields, metavar="TARGET[,TARGET...]", help="Targets to search. Default: every target of the index.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Model folder, if it moved since indexing. Default: the folder recorded in the index.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1), help="Records per forward pass.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the metrics as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@device_option()
@quiet_option()
def eval_retrieval_command(index_dir, manifest, exclude_self, paired, query_sets, targets, model_dir, batch_size, out, as_json, device, quiet) -> None:
    """Measure retrieval on --manifest: class recall@1/5/10 and mAP@10 per pair.

    mAP@10 averages, over queries, AP@10 = (1 / min(R, 10)) * sum of P(i) * rel(i) for
    ranks i = 1..10, where R counts the same-label records in the target.
    """
    from ..model import MultimodalVAE
    from ..persistence import atomic_write_json
    from ..retrieval import RetrievalIndex, evaluate_retrieval

    if paired and exclude_self:
        raise click.UsageError("--paired and --exclude-self contradict each other, so pass one of them")
    subsets = [tuple(name.strip() for name in item.split("+") if name.strip()) for item in query_sets]
    model = MultimodalVAE.from_pretrained(model_dir, device=device) if model_dir else None
    index = RetrievalIndex.load(index_dir, model, device=device)
    try:
        report = evaluate_retrieval(
            index,
            manifest,
            query_fields=subsets or None,
            targets=targets,
            exclude_self=exclude_self,
            paired=paired,
            batch_size=batch_size,
            progress=not quiet,
        )
    except ValueError as error:
        # Unknown fields or targets and unlabelled manifests, with the accepted values.
        raise click.ClickException(str(error)) from error
    if out is not None:
        atomic_write_json(out, report.to_dict())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(report.to_text())
    gallery = "each query's own record left out" if exclude_self else "every indexed record"
    click.echo(f"\nGallery: {gallery}. Queries without a same-label record in a target are left out of its class metrics.")
