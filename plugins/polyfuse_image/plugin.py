"""Entry point of the built-in image plugin."""

from polyfuse.hookspecs import hookimpl

from .modality import ImageModality


@hookimpl
def register_modalities(register):
    register(ImageModality)
