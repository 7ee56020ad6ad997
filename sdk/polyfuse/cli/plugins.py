"""``polyfuse plugins``: list installed plugins and what they register."""

from __future__ import annotations

import json

import click

from .main import cli


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List each plugin with its distribution, version, status and registrations."""
    from ..plugins import ONLY_PLUGINS_ENV, STRICT_PLUGINS_ENV, get_host

    host = get_host()
    infos = sorted(host.plugins.values(), key=lambda info: info.name)
    if as_json:
        click.echo(json.dumps({"plugins": [info.to_dict() for info in infos]}, indent=2))
        return
    if not infos:
        click.echo("No polyfuse plugins are installed.")
        return
    for info in infos:
        version = f" {info.version}" if info.version else ""
        click.echo(f"{info.name}  ({info.distribution}{version}, {info.module})  {info.status}")
        for kind, names in sorted(info.registered.items()):
            click.echo(f"    {kind}: {', '.join(sorted(names))}")
        if info.error:
            click.echo(f"    error: {info.error}")
    click.echo(f"\n{ONLY_PLUGINS_ENV} limits which plugins load; {STRICT_PLUGINS_ENV}=1 makes import failures fatal.")
