"""``polyfuse datasets``: list and build data set recipes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .main import cli
from .options import quiet_option


@cli.group("datasets")
def datasets_group() -> None:
    """List and build data set recipes (real files plus manifests)."""


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_command(as_json: bool) -> None:
    """List the registered recipes and the plugins that provide them."""
    from ..plugins import get_host

    entries = sorted(get_host().datasets, key=lambda entry: entry.name)
    if as_json:
        rows = [
            {
                "name": e.name,
                "description": e.cls.description,
                "needs_source": e.cls.needs_source,
                "can_fetch": e.cls.can_fetch,
                "plugin": e.plugin,
                "distribution": e.distribution,
            }
            for e in entries
        ]
        click.echo(json.dumps({"datasets": rows}, indent=2))
        return
    for entry in entries:
        source = ""
        if entry.cls.needs_source:
            source = " (needs --source or --fetch)" if entry.cls.can_fetch else " (needs --source)"
        click.echo(f"{entry.name}  [{entry.plugin}]  {entry.cls.description}{source}")


@datasets_group.command("build")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write files and manifests into.")
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder with the recipe's source files in its documented layout.")
@click.option("--fetch", is_flag=True, help="Download missing public originals and check their sha256 sums (needs internet).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random pairing and split.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records per split, balanced over labels.")
@quiet_option()
def build_command(name, out, source, fetch, seed, limit, quiet) -> None:
    """Build the data set NAME into --out (see 'polyfuse datasets list')."""
    from ..plugins import get_host

    recipe_class = get_host().datasets.get(name)
    if recipe_class.needs_source and source is None and not (fetch and recipe_class.can_fetch):
        alternative = " or --fetch" if recipe_class.can_fetch else ""
        raise click.UsageError(f"recipe '{name}' needs --source DIR (its source files){alternative}")
    output = recipe_class().build(out, source=source, fetch=fetch, seed=seed, limit=limit, progress=not quiet)
    for split, path in output.manifests.items():
        click.echo(f"{split}: {output.counts.get(split, 0)} records in {path}")
    if output.config is not None:
        click.echo(f"suggested run config: {output.config}")
    for note in output.notes:
        click.echo(note)
