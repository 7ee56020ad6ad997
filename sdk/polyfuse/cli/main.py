"""The root ``polyfuse`` command group, error reporting and logging set-up."""

from __future__ import annotations

import importlib
import logging
import sys
import warnings

import click

from .._version import __version__


class PolyfuseGroup(click.Group):
    """A group that turns polyfuse errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        from ..errors import PolyfuseError

        try:
            return super().invoke(ctx)
        except PolyfuseError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=PolyfuseGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="polyfuse")
@click.option("-v", "--verbose", count=True, help="Log more: -v for INFO, -vv for DEBUG (to stderr).")
def cli(verbose: int) -> None:
    """Fuse text, images, audio and sensor series into one shared latent space.

    Train a multimodal VAE on a manifest, encode records from any subset of their
    modalities, and manage plugins and data set recipes.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    warnings.formatwarning = _format_warning


# One module per command; importing a module registers its command on the group.
COMMAND_MODULES = (
    "datasets", "demo", "encode", "eval_retrieval", "evaluate", "generate", "index", "plugins", "search", "train", "train_generator",
)


def load_commands() -> None:
    """Import every command module so that its command is registered on :data:`cli`."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def main() -> None:
    """Run the CLI (the ``polyfuse`` console script)."""
    load_commands()
    cli(prog_name="polyfuse")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"
