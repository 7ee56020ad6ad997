"""Render the Markdown CLI reference (docs/cli.md) from the commands' own help text.

    python -m polyfuse.cli.reference > docs/cli.md

A test compares docs/cli.md with this output, so the reference cannot drift from the code.
"""

from __future__ import annotations

import click

from .main import cli, load_commands


def render_reference() -> str:
    """Return the help of every command and subcommand as one Markdown page."""
    load_commands()
    lines = [
        "# Command-line reference",
        "",
        "Generated from `polyfuse --help` by `python -m polyfuse.cli.reference`; do not edit by hand.",
        "",
    ]
    # The root's context settings (for example -h as a help option) reach every subcommand's context.
    settings = {**cli.context_settings, "max_content_width": 100, "terminal_width": 100}
    context = click.Context(cli, info_name="polyfuse", **settings)
    lines += _section(cli, context, "polyfuse", level=2)
    return "\n".join(lines).rstrip() + "\n"


def _section(command: click.Command, context: click.Context, path: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{path}`", "", "```text", command.get_help(context).rstrip(), "```", ""]
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            child = command.get_command(context, name)
            child_context = click.Context(child, info_name=name, parent=context, max_content_width=100, terminal_width=100)
            lines += _section(child, child_context, f"{path} {name}", level + 1 if level < 4 else level)
    return lines


if __name__ == "__main__":
    print(render_reference(), end="")
