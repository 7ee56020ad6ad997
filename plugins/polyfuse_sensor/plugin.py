"""Entry point of the built-in sensor plugin."""

from polyfuse.hookspecs import hookimpl

from .modality import SensorModality


@hookimpl
def register_modalities(register):
    register(SensorModality)
