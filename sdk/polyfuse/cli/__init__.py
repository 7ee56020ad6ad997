"""The ``polyfuse`` command line; heavy libraries are imported inside the commands that need them."""

from .main import cli, main

__all__ = ["cli", "main"]
