"""Built-in text modality for polyfuse: inline strings or UTF-8 files, byte-level or Hugging Face tokens."""

from .modality import TextConfig, TextModality
from .networks import GRUDecoder, PretrainedBackbone, TransformerBackbone
from .tokenizer import ByteTokenizer, HuggingFaceTokenizer, Tokenizer, build_sequence, load_tokenizer

__all__ = [
    "ByteTokenizer",
    "GRUDecoder",
    "HuggingFaceTokenizer",
    "PretrainedBackbone",
    "TextConfig",
    "TextModality",
    "Tokenizer",
    "TransformerBackbone",
    "build_sequence",
    "load_tokenizer",
]
