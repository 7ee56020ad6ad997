"""Option types shared by several commands."""

from __future__ import annotations

import click


def split_fields(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...] | None:
    """Accept ``--modalities image,audio`` and repeated ``--modalities image --modalities audio``."""
    fields = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return tuple(dict.fromkeys(fields)) or None


def modalities_option(help_text: str):
    return click.option("--modalities", "fields", multiple=True, callback=split_fields, metavar="FIELD[,FIELD...]", help=help_text)


def device_option():
    return click.option("--device", default="cpu", show_default=True, help="Torch device, for example cpu or cuda.")


def quiet_option():
    return click.option("-q", "--quiet", is_flag=True, help="Hide progress bars.")
