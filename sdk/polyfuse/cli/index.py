"""``polyfuse index``: encode a manifest's records and build a searchable FAISS index of them."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import device_option, modalities_option, quiet_option


@cli.command("index")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse train'.")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSONL or CSV manifest of the records to index.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Index folder. An existing index there stays usable until the new one is complete.")
@modalities_option("Fields to index, one index each plus 'fused'. Default: every field of the model.")
@click.option("--index-spec", metavar="FACTORY", help="FAISS factory string for every index, such as Flat, HNSW32, IVF1024,Flat or OPQ16,IVF1024,PQ16. Default: chosen from the size.")
@click.option("--memory-budget", metavar="SIZE", help="Memory for all indexes together, in bytes or with a unit: 512MB, 4GiB. Default: no limit.")
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True, help="Similarity: cosine, or squared Euclidean distance.")
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True, help="Recall@10 against exact search that approximate indexes are tuned to, in (0, 1].")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1), help="Records per forward pass.")
@click.option("--chunk-size", type=click.IntRange(min=1), help="Records encoded between saves, the work an interrupted build redoes. Default: 8 batches.")
@click.option("--skip-invalid", is_flag=True, help="Skip records whose files are missing or unreadable, reporting each one.")
@device_option()
@quiet_option()
def index_command(model_dir, manifest, out, fields, index_spec, memory_budget, metric, target_recall, batch_size, chunk_size, skip_invalid, device, quiet) -> None:
    """Build a retrieval index of every record of --manifest in --out.

    Each record gets one vector per modality it has and one fused vector. Running the
    command again after an interruption resumes from the records already encoded.
    """
    from ..retrieval import build_index

    try:
        output = build_index(
            model_dir,
            manifest,
            out,
            fields=fields,
            index_spec=index_spec,
            memory_budget=memory_budget,
            metric=metric,
            batch_size=batch_size,
            progress=not quiet,
            target_recall=target_recall,
            chunk_size=chunk_size,
            skip_invalid=skip_invalid,
            device=device,
        )
    except ValueError as error:
        # Invalid specs, budgets and fields come back as ValueError with the value and the fix.
        raise click.ClickException(str(error)) from error
    for skipped in output.skipped:
        click.echo(f"skipped {skipped.id}: {skipped.error}", err=True)
    for target, count in output.counts.items():
        spec, tuning = output.specs[target], output.tuning[target]
        tuned = f", {tuning.parameter}={tuning.value} (recall@{tuning.k} {tuning.recall:.3f})" if tuning else ""
        click.echo(f"{target}: {count} vectors, {spec.factory}{tuned}")
        for adjustment in spec.adjustments:
            click.echo(f"    {adjustment}")
    resumed = f", {output.resumed_chunks} chunks resumed" if output.resumed_chunks else ""
    click.echo(f"Wrote index {output.version.name} to {out} in {output.seconds:.1f} s{resumed}")
