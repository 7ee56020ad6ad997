"""Entry point of the built-in audio plugin."""

from polyfuse.hookspecs import hookimpl

from .modality import AudioModality


@hookimpl
def register_modalities(register):
    register(AudioModality)
