"""Built-in data set recipes for polyfuse: ``digits``, ``sklearn-digits``, ``twemoji`` and ``shoulder``."""

from .captions import CAPTION_TEMPLATES, NUMBER_WORDS, caption, choose_captions
from .digits import DIGITS_TRAIN_CONFIG, DigitsRecipe, pair_digits_sources
from .errors import ChecksumError, DownloadError, SourceError, SourceNotFoundError
from .pairing import DigitsPairing, SplitPairing, balanced_subset, pair_digits
from .shoulder import (
    SHOULDER_TRAIN_CONFIG,
    ShoulderRecipe,
    ShoulderRecordings,
    ShoulderWindows,
    cut_windows,
    load_shoulder_recordings,
    split_shoulder,
)
from .sklearn_digits import SKLEARN_DIGITS_TRAIN_CONFIG, SklearnDigitsRecipe
from .sources import DigitsSources, load_digits_sources, locate_digits_sources, locate_manual_source
from .twemoji import TWEMOJI_TRAIN_CONFIG, TwemojiIcons, TwemojiRecipe, load_twemoji, split_twemoji, twemoji_captions

__all__ = [
    "CAPTION_TEMPLATES",
    "ChecksumError",
    "DIGITS_TRAIN_CONFIG",
    "DigitsPairing",
    "DigitsRecipe",
    "DigitsSources",
    "DownloadError",
    "NUMBER_WORDS",
    "SHOULDER_TRAIN_CONFIG",
    "SKLEARN_DIGITS_TRAIN_CONFIG",
    "ShoulderRecipe",
    "ShoulderRecordings",
    "ShoulderWindows",
    "SklearnDigitsRecipe",
    "SourceError",
    "SourceNotFoundError",
    "SplitPairing",
    "TWEMOJI_TRAIN_CONFIG",
    "TwemojiIcons",
    "TwemojiRecipe",
    "balanced_subset",
    "caption",
    "choose_captions",
    "cut_windows",
    "load_digits_sources",
    "load_shoulder_recordings",
    "load_twemoji",
    "locate_digits_sources",
    "locate_manual_source",
    "pair_digits",
    "pair_digits_sources",
    "split_shoulder",
    "split_twemoji",
    "twemoji_captions",
]
