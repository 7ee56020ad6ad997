"""The text modality: inline strings or UTF-8 files, as token ids framed by bos and eos."""

from __future__ import annotations

import logging
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from polyfuse.config import require
from polyfuse.modality import PRESENT_DTYPE, Encoder, Modality, ModalityBatch, ModalityConfig, RecordSource
from polyfuse.persistence import atomic_write_text

from .networks import DEFAULT_BACKBONE, GRUDecoder, PretrainedBackbone, TransformerBackbone
from .tokenizer import BYTE_TOKENIZER, Tokenizer, build_sequence, load_tokenizer, local_folder

logger = logging.getLogger(__name__)

# Records are prepared in a thread pool, so the lock keeps a tokenizer from loading twice. It
# lives at module level because a lock attribute would make modalities impossible to deepcopy.
_TOKENIZER_LOCK = threading.Lock()


@dataclass(frozen=True)
class TextConfig(ModalityConfig):
    """Settings of the text modality.

    ``tokenizer`` and ``backbone`` take local folder paths only. They are stored as given,
    so use absolute paths for models that are loaded from another working directory.
    """

    max_length: int = 64  # token ids per sequence including bos and eos, >= 3
    tokenizer: str = BYTE_TOKENIZER  # "byte", or a local folder of a Hugging Face tokenizer
    backbone: str = DEFAULT_BACKBONE  # "default" (small Transformer), or a local folder of a Hugging Face encoder model
    freeze_backbone: bool = True  # keep the weights of a pretrained backbone fixed in training
    embedding_dim: int = 128  # width of token embeddings in the default backbone and the decoder
    num_layers: int = 2  # Transformer layers of the default backbone
    num_heads: int = 4  # attention heads per layer of the default backbone, a divisor of embedding_dim
    decoder_hidden: int = 256  # hidden units of the GRU decoder
    dropout: float = 0.0  # dropout probability in the default backbone and the decoder, in [0, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.max_length, int) and self.max_length >= 3, f"max_length must be an integer >= 3 (bos, one id, eos), got {self.max_length!r}")
        require(isinstance(self.tokenizer, str) and self.tokenizer.strip() != "", f"tokenizer must be 'byte' or a folder path, got {self.tokenizer!r}")
        require(isinstance(self.backbone, str) and self.backbone.strip() != "", f"backbone must be 'default' or a folder path, got {self.backbone!r}")
        require(isinstance(self.freeze_backbone, bool), f"freeze_backbone must be true or false, got {self.freeze_backbone!r}")
        require(self.embedding_dim > 0, f"embedding_dim must be > 0, got {self.embedding_dim}")
        require(self.num_layers > 0, f"num_layers must be > 0, got {self.num_layers}")
        require(self.num_heads > 0, f"num_heads must be > 0, got {self.num_heads}")
        if self.backbone == DEFAULT_BACKBONE:
            require(self.embedding_dim % self.num_heads == 0, f"num_heads ({self.num_heads}) must divide embedding_dim ({self.embedding_dim})")
        require(self.decoder_hidden > 0, f"decoder_hidden must be > 0, got {self.decoder_hidden}")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def resolved_tokenizer(self) -> str:
        """The tokenizer in use, which for "byte" with a pretrained backbone is the backbone's folder.

        Byte ids would mean nothing to a pretrained model, so its own tokenizer is the only
        useful default.
        """
        if self.tokenizer == BYTE_TOKENIZER and self.backbone != DEFAULT_BACKBONE:
            return self.backbone
        return self.tokenizer


class TextModality(Modality):
    """Text given inline as ``str``, or as a ``pathlib.Path`` to a UTF-8 file.

    A ``str`` is always the text itself, never a path, so manifest fields contain captions
    directly. Text is normalised to Unicode NFC, and decoded text is saved as ``.txt``.
    The tokenizer loads on first use.
    """

    name = "text"
    config_class = TextConfig
    file_suffix = ".txt"
    description = "text: inline strings, or UTF-8 text files passed as pathlib.Path"
    # "typos": each character is replaced by a random lowercase letter, deleted, or
    # doubled with this probability in all (one third each).
    corruptions = {"typos": (0.05, 0.1, 0.2, 0.4)}
    config: TextConfig

    def __init__(self, config: TextConfig | None = None, *, field: str | None = None):
        super().__init__(config, field=field)
        self._tokenizer: Tokenizer | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer that ``config.resolved_tokenizer`` names, loaded on first access."""
        with _TOKENIZER_LOCK:
            if self._tokenizer is None:
                name = self.config.resolved_tokenizer
                if name != self.config.tokenizer:
                    # Checked here so that a missing folder is reported under the setting the user wrote.
                    local_folder(name, "backbone", DEFAULT_BACKBONE)
                    logger.info("Text field '%s' uses the tokenizer of its backbone folder %s", self.field, name)
                self._tokenizer = load_tokenizer(name)
            return self._tokenizer

    # -- reading -------------------------------------------------------------

    def load(self, value: Any, source: RecordSource) -> str:
        if isinstance(value, Path):
            text = _read_text_file(source.resolve_file(value, self.field), source, self.field)
        elif isinstance(value, str):
            text = value
        else:
            raise source.error(
                self.field,
                f"expected text as a str, or a pathlib.Path to a UTF-8 text file, got {type(value).__name__}",
                value,
                "Pass the text itself as a string",
            )
        text = unicodedata.normalize("NFC", text)
        if not text.strip():
            raise source.error(self.field, "text is empty or only whitespace", value, "Give the field some text or leave it out of this record")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise source.error(
                self.field,
                f"text contains a lone surrogate at character {error.start}, which is not valid Unicode",
                value,
                "Remove the character, or decode the source with errors='replace'",
            ) from error
        return text

    def preprocess(self, raw: str) -> torch.Tensor:
        """Return the token ids (T,) of ``raw``, bos and eos included, truncated by :func:`build_sequence`."""
        tokenizer = self.tokenizer
        return torch.tensor(build_sequence(tokenizer.encode(raw), tokenizer, self.config.max_length), dtype=torch.long)

    def collate(self, items: Sequence[torch.Tensor | None]) -> ModalityBatch:
        """Pad id sequences with the tokenizer's ``pad_id`` into (B, T), with ``lengths`` (B,) always set.

        Absent rows hold only pad ids and have length 0.
        """
        present = torch.tensor([item is not None for item in items], dtype=PRESENT_DTYPE)
        lengths = torch.tensor([0 if item is None else item.shape[0] for item in items], dtype=torch.long)
        width = max(lengths.tolist(), default=0)
        data = torch.full((len(items), width), self.tokenizer.pad_id, dtype=torch.long)
        for row, item in enumerate(items):
            if item is not None:
                data[row, : item.shape[0]] = item
        return ModalityBatch(data, present, lengths)

    def corrupt(self, item: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
        if kind != "typos":
            return super().corrupt(item, kind, level, generator)
        text = self.postprocess(item)
        draws = torch.rand(len(text), 2, generator=generator).tolist()
        letters = torch.randint(0, 26, (len(text),), generator=generator).tolist()
        typed: list[str] = []
        for character, (chance, choice), letter in zip(text, draws, letters):
            if chance >= level:
                typed.append(character)
            elif choice < 1 / 3:
                typed.append(chr(ord("a") + letter))
            elif choice < 2 / 3:
                continue
            else:
                typed.append(character * 2)
        # A text that lost every character becomes "a", because the modality rejects empty text.
        return self.preprocess("".join(typed) or "a")

    # -- networks ------------------------------------------------------------

    def build_encoder(self, latent_dim: int) -> Encoder:
        config = self.config
        vocab_size = self.tokenizer.vocab_size
        if config.backbone == DEFAULT_BACKBONE:
            backbone = TransformerBackbone(
                vocab_size,
                config.max_length,
                config.embedding_dim,
                config.num_layers,
                config.num_heads,
                config.dropout,
                config.feature_dim,
            )
        else:
            backbone = PretrainedBackbone(
                config.backbone,
                config.feature_dim,
                freeze=config.freeze_backbone,
                max_length=config.max_length,
                vocab_size=vocab_size,
            )
        return Encoder(backbone, config.feature_dim, latent_dim)

    def build_decoder(self, latent_dim: int) -> GRUDecoder:
        config = self.config
        tokenizer = self.tokenizer
        return GRUDecoder(
            latent_dim,
            tokenizer.vocab_size,
            config.embedding_dim,
            config.decoder_hidden,
            config.max_length,
            pad_id=tokenizer.pad_id,
            bos_id=tokenizer.bos_id,
            eos_id=tokenizer.eos_id,
            dropout=config.dropout,
        )

    # -- writing -------------------------------------------------------------

    def postprocess(self, data: torch.Tensor, length: int | None = None) -> str:
        """Decode one id sequence (T,) to text.

        A leading bos, the first eos and every id after it are dropped, and so are other
        special ids.
        """
        if data.dim() != 1:
            raise ValueError(f"postprocess expects one id sequence of shape (T,), got shape {tuple(data.shape)}. Pass one row of the batch")
        ids = (data if length is None else data[:length]).tolist()
        tokenizer = self.tokenizer
        if ids and ids[0] == tokenizer.bos_id:
            ids = ids[1:]
        if tokenizer.eos_id in ids:
            ids = ids[: ids.index(tokenizer.eos_id)]
        return tokenizer.decode(ids)

    def save(self, value: str, path: str | Path) -> Path:
        """Write ``value`` as UTF-8 with one final line break, which :meth:`load` strips again."""
        if not isinstance(value, str):
            raise TypeError(f"TextModality.save expects a str, got {type(value).__name__}. Pass the output of postprocess")
        return atomic_write_text(Path(path), value + "\n")


def _read_text_file(path: Path, source: RecordSource, field: str) -> str:
    """Read a UTF-8 file without its byte-order mark and without one final line break."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise source.error(
            field, f"file is not valid UTF-8 (byte {error.start}: {error.reason})", path, "Save the file with UTF-8 encoding"
        ) from error
    except OSError as error:
        raise source.error(field, f"cannot read file ({error.strerror or error})", path, "Check that the file is readable") from error
    # POSIX text files end with a line break that belongs to the file format, not to the text.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text
