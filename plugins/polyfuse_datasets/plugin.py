"""Entry point of the built-in data set recipes."""

from polyfuse.hookspecs import hookimpl

from .digits import DigitsRecipe
from .shoulder import ShoulderRecipe
from .sklearn_digits import SklearnDigitsRecipe
from .twemoji import TwemojiRecipe


@hookimpl
def register_datasets(register):
    register(DigitsRecipe)
    register(SklearnDigitsRecipe)
    register(TwemojiRecipe)
    register(ShoulderRecipe)
