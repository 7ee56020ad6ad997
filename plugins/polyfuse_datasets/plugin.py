"""Entry point of the built-in data set recipes."""

from polyfuse.hookspecs import hookimpl

from .digits import DigitsRecipe
from .sklearn_digits import SklearnDigitsRecipe


@hookimpl
def register_datasets(register):
    register(DigitsRecipe)
    register(SklearnDigitsRecipe)
