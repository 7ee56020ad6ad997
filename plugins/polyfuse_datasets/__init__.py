"""Built-in data set recipes for polyfuse: ``digits`` (MNIST, FSDD, pendigits, captions) and ``sklearn-digits``."""

from .captions import CAPTION_TEMPLATES, NUMBER_WORDS, caption, choose_captions
from .digits import DIGITS_TRAIN_CONFIG, DigitsRecipe, pair_digits_sources
from .errors import ChecksumError, DownloadError, SourceError, SourceNotFoundError
from .pairing import DigitsPairing, SplitPairing, balanced_subset, pair_digits
from .sklearn_digits import SKLEARN_DIGITS_TRAIN_CONFIG, SklearnDigitsRecipe
from .sources import DigitsSources, load_digits_sources, locate_digits_sources

__all__ = [
    "CAPTION_TEMPLATES",
    "ChecksumError",
    "DIGITS_TRAIN_CONFIG",
    "DigitsPairing",
    "DigitsRecipe",
    "DigitsSources",
    "DownloadError",
    "NUMBER_WORDS",
    "SKLEARN_DIGITS_TRAIN_CONFIG",
    "SklearnDigitsRecipe",
    "SourceError",
    "SourceNotFoundError",
    "SplitPairing",
    "balanced_subset",
    "caption",
    "choose_captions",
    "load_digits_sources",
    "locate_digits_sources",
    "pair_digits",
    "pair_digits_sources",
]
