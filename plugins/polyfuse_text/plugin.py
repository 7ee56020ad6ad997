"""Entry point of the built-in text plugin."""

from polyfuse.hookspecs import hookimpl

from .modality import TextModality


@hookimpl
def register_modalities(register):
    register(TextModality)
