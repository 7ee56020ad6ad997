"""``polyfuse search``: find the records of one modality nearest a query of any modalities."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import cli
from .options import device_option

# Built-in modality fields that get their own option. Other fields go through --query.
BUILT_IN_FIELDS = ("text", "image", "audio", "sensor")


@cli.command("search")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse index'.")
@click.option("--target", required=True, help="Modality field to retrieve, or 'fused' for records as a whole.")
@click.option("--text", help="Query caption (the text field).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query image file (the image field).")
@click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query sound file (the audio field).")
@click.option("--sensor", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query sensor series file, .npy, .npz or .csv (the sensor field).")
@click.option("--query", "extra", multiple=True, metavar="FIELD=VALUE", help="Query value of any model field, for plugin modalities. Repeatable.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Model folder, if it moved since indexing. Default: the folder recorded in the index.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of records to return.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@device_option()
def search_command(index_dir, target, text, image, audio, sensor, extra, model_dir, k, as_json, device) -> None:
    """Search --index for the --target records nearest one query.

    Give one or more query fields. The model fuses several into one query.
    """
    query = {name: value for name, value in zip(BUILT_IN_FIELDS, (text, image, audio, sensor)) if value is not None}
    for item in extra:
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise click.BadParameter(f"expected FIELD=VALUE, got {item!r}", param_hint="--query")
        if name.strip() in query:
            raise click.BadParameter(f"field {name.strip()!r} is given twice", param_hint="--query")
        query[name.strip()] = value
    if not query:
        raise click.UsageError("give at least one query value: --text, --image, --audio, --sensor or --query FIELD=VALUE")
    query = {name: str(value) if isinstance(value, Path) else value for name, value in query.items()}

    from ..model import MultimodalVAE
    from ..retrieval import RetrievalIndex

    model = MultimodalVAE.from_pretrained(model_dir, device=device) if model_dir else None
    index = RetrievalIndex.load(index_dir, model, device=device)
    try:
        result = index.search([query], target, k)[0]
    except ValueError as error:
        # Unknown fields or targets and unreadable query files, with the accepted values.
        raise click.ClickException(str(error)) from error
    if as_json:
        hits = [
            {"record_id": h.record_id, "score": h.score, "path": h.path, "label": h.label, "metadata": h.metadata, "paths": h.paths, "values": h.values}
            for h in result.hits
        ]
        click.echo(json.dumps({"query": list(result.fields), "target": target, "hits": hits}, indent=2, ensure_ascii=False))
        return
    for rank, hit in enumerate(result.hits, start=1):
        shown = hit.path or hit.values.get(target, "")
        label = f"  label={hit.label}" if hit.label is not None else ""
        click.echo(f"{rank:3d}  {hit.score:+.4f}  {hit.record_id}  {shown}{label}")
        if hit.metadata:
            click.echo(f"     {json.dumps(hit.metadata, ensure_ascii=False)}")
