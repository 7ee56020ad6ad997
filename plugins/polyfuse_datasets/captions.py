"""English captions for digit records, from a few templates that mix number words and numerals."""

from __future__ import annotations

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {word} is the English number word and {numeral} the digit, so the captions use both forms.
CAPTION_TEMPLATES = (
    "a handwritten {word}",
    "the digit {numeral}",
    "the number {word}",
    "{word}",
    "a drawing of the digit {numeral}",
    "the numeral {numeral}",
    "a {word} written by hand",
)


def caption(label: int, template: int) -> str:
    """Fill ``CAPTION_TEMPLATES[template]`` for the digit ``label``."""
    if not 0 <= label < len(NUMBER_WORDS):
        raise ValueError(f"caption label must be a digit 0-9, got {label!r}")
    return CAPTION_TEMPLATES[template].format(word=NUMBER_WORDS[label], numeral=label)


def choose_captions(labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Return one caption per label, drawing each template uniformly with ``rng``."""
    templates = rng.integers(len(CAPTION_TEMPLATES), size=len(labels))
    return [caption(int(label), int(template)) for label, template in zip(labels, templates)]
