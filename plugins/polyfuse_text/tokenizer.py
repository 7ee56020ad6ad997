"""Tokenizers of the text modality, and the one truncation rule that every text path shares.

Every sequence is ``[bos] + content + [eos]`` with at most ``max_length`` ids, so content
keeps its first ``max_length - 2`` tokens. With the byte tokenizer the cut moves back to the
last whole UTF-8 character. Encoder inputs, decoder targets and generated sequences all
follow this rule, which :func:`build_sequence` implements.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence

from polyfuse.errors import ConfigError

logger = logging.getLogger(__name__)

BYTE_TOKENIZER = "byte"
# Ids below this offset are special tokens, so byte b has id b + _BYTE_OFFSET.
_BYTE_OFFSET = 3


class Tokenizer(Protocol):
    """The interface that the text modality needs from a tokenizer."""

    pad_id: int
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """Return the content ids of ``text``, without bos or eos."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``, skipping special ids."""
        ...


class ByteTokenizer:
    """UTF-8 bytes as ids: 0 is pad, 1 is bos, 2 is eos, and byte b is id b + 3 (259 ids).

    Every string round-trips exactly, emoji and CJK included, and no vocabulary file is
    needed.
    """

    pad_id = 0
    bos_id = 1
    eos_id = 2
    vocab_size = 256 + _BYTE_OFFSET

    def encode(self, text: str) -> list[int]:
        return [byte + _BYTE_OFFSET for byte in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``, with U+FFFD for bytes that do not form valid UTF-8."""
        out_of_range = [int(i) for i in ids if not 0 <= int(i) < self.vocab_size]
        if out_of_range:
            raise ValueError(
                f"byte tokenizer ids must be in [0, {self.vocab_size}), got {out_of_range[:5]}. "
                "Decode ids produced by this tokenizer or by a decoder built with it"
            )
        data = bytes(int(i) - _BYTE_OFFSET for i in ids if int(i) >= _BYTE_OFFSET)
        return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HuggingFaceTokenizer:
    """A Hugging Face tokenizer loaded from a local folder with ``local_files_only``.

    Special ids map as follows. bos is the tokenizer's cls token, else its bos token, else
    its pad token. eos is its sep token, else its eos token, else its pad token. pad is its
    pad token, else eos. Encoder tokenizers such as BERT's thus frame text as
    ``[CLS] ... [SEP]``, the format their models were pretrained on. ``vocab_size`` counts
    added tokens too. Hub names are never downloaded, and no code from the folder runs.
    """

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer

        folder = local_folder(path, "tokenizer", BYTE_TOKENIZER)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"tokenizer: no Hugging Face tokenizer could be loaded from {folder} ({error}). "
                "Point tokenizer at a folder written by a tokenizer's save_pretrained "
                f"(with tokenizer.json or tokenizer_config.json), or set it to {BYTE_TOKENIZER!r}"
            ) from error
        self.path = folder
        self.pad_id, self.bos_id, self.eos_id = _special_ids(self._tokenizer, folder)
        self.vocab_size = len(self._tokenizer)
        logger.info(
            "Loaded Hugging Face tokenizer from %s (vocab_size %d, pad %d, bos %d, eos %d)",
            folder,
            self.vocab_size,
            self.pad_id,
            self.bos_id,
            self.eos_id,
        )

    def encode(self, text: str) -> list[int]:
        # build_sequence truncates afterwards, so the warning about inputs longer than the
        # model's maximum is turned off.
        return list(self._tokenizer.encode(text, add_special_tokens=False, verbose=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({str(self.path)!r})"


def load_tokenizer(name: str) -> Tokenizer:
    """Create the tokenizer that a ``TextConfig.tokenizer`` value names: "byte" or a local folder."""
    if name == BYTE_TOKENIZER:
        return ByteTokenizer()
    return HuggingFaceTokenizer(name)


def build_sequence(content: Sequence[int], tokenizer: Tokenizer, max_length: int) -> list[int]:
    """Frame content ids as ``[bos] + content + [eos]`` with at most ``max_length`` ids.

    This is the single truncation rule of the text modality. Content longer than
    ``max_length - 2`` ids keeps its first ``max_length - 2``. With a :class:`ByteTokenizer`
    the cut moves back to the first byte of the character it would split, so the kept bytes
    always decode to whole characters and the sequence may be up to 3 ids shorter than
    ``max_length``. Truncation is logged at DEBUG.
    """
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 to hold bos, one content id and eos, got {max_length}")
    budget = max_length - 2
    if len(content) > budget:
        cut = _utf8_boundary(content, budget) if isinstance(tokenizer, ByteTokenizer) else budget
        logger.debug("Truncated text from %d to %d content ids to fit max_length %d", len(content), cut, max_length)
        content = content[:cut]
    return [tokenizer.bos_id, *content, tokenizer.eos_id]


def local_folder(value: str | Path, setting: str, builtin: str) -> Path:
    """Resolve a config path to an existing local folder.

    ``setting`` names the config field and ``builtin`` its non-path value, for the message.
    Names that are not local folders, such as Hugging Face Hub ids, are rejected here, so
    nothing is ever downloaded.
    """
    folder = Path(value).expanduser().resolve()
    if not folder.exists():
        raise ConfigError(
            f"{setting}: folder not found: {folder} (from {str(value)!r}). Set {setting} to {builtin!r} or to a "
            "local folder written by a Hugging Face save_pretrained, because polyfuse never downloads models"
        )
    if not folder.is_dir():
        raise ConfigError(
            f"{setting}: {folder} is a file, not a folder. Point {setting} at the folder that contains it, or set it to {builtin!r}"
        )
    return folder


def _special_ids(tokenizer, folder: Path) -> tuple[int, int, int]:
    pad = tokenizer.pad_token_id
    bos = _first_defined(tokenizer.cls_token_id, tokenizer.bos_token_id, pad)
    eos = _first_defined(tokenizer.sep_token_id, tokenizer.eos_token_id, pad)
    pad = _first_defined(pad, eos)
    if bos is None or eos is None or pad is None:
        raise ConfigError(
            f"tokenizer in {folder} defines none of the cls, sep, bos, eos or pad tokens, so text cannot be "
            "framed with start and end ids. Add them to the tokenizer (add_special_tokens) and save it again"
        )
    return pad, bos, eos


def _first_defined(*ids: int | None) -> int | None:
    return next((i for i in ids if i is not None), None)


def _utf8_boundary(content: Sequence[int], limit: int) -> int:
    """Return the largest cut <= ``limit`` that falls at the start of a UTF-8 character."""
    cut = limit
    # Continuation bytes have the bit pattern 10xxxxxx, and any other byte starts a character.
    while cut > 0 and (content[cut] - _BYTE_OFFSET) & 0xC0 == 0x80:
        cut -= 1
    return cut
