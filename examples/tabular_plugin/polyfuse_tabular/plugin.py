"""Entry point listed under the ``polyfuse`` group in pyproject.toml."""

from polyfuse import hookimpl

from .modality import TabularModality


@hookimpl
def register_modalities(register):
    register(TabularModality)
