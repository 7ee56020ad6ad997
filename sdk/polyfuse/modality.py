"""The modality contract: what a modality plugin implements, from file to latent and back.

A modality plugin subclasses :class:`Modality` and registers it through the
``register_modalities`` hook. The host calls, in order: :meth:`Modality.load` (read and
validate one value), :meth:`Modality.preprocess` (one tensor), :meth:`Modality.collate`
(a padded batch with a presence mask), the :class:`Encoder` (a Gaussian posterior in the
shared latent), the :class:`Decoder` (log-likelihood in training, outputs in generation),
then :meth:`Modality.postprocess` and :meth:`Modality.save` to write a file.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from .config import config_from_dict, config_to_dict, require
from .errors import InvalidRecordError
from .posterior import DiagonalGaussian

PRESENT_DTYPE = torch.bool


@dataclass(frozen=True)
class ModalityConfig:
    """Settings that every modality has; plugins subclass it with their own fields."""

    likelihood_weight: float = 1.0  # multiplies this modality's log-likelihood in the objective, > 0
    feature_dim: int = 256  # width of the backbone output that the projection head reads

    def __post_init__(self) -> None:
        require(self.likelihood_weight > 0, f"likelihood_weight must be > 0, got {self.likelihood_weight}")
        require(self.feature_dim > 0, f"feature_dim must be > 0, got {self.feature_dim}")


@dataclass(frozen=True)
class RecordSource:
    """Where a value comes from, for error messages and for resolving relative paths."""

    description: str = "input"  # for example "data/train.jsonl line 12" or "input"
    base_dir: Path | None = None  # folder that relative paths are resolved against

    def error(self, field: str, reason: str, value: object = None, fix: str | None = None) -> InvalidRecordError:
        return InvalidRecordError(reason, source=self.description, field=field, value=value, fix=fix)

    def _relative_to(self) -> str:
        """Describe the folder that relative paths of this source resolve against, for error messages."""
        if self.base_dir is None:
            return "the working directory"
        return f"{self.base_dir}"

    def resolve_file(self, value: str | Path, field: str) -> Path:
        """Resolve a path against ``base_dir`` and check that it is a readable, non-empty file."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        path = path.resolve()
        if not path.exists():
            raise self.error(field, "file not found", path, f"Check the path; relative paths are resolved against {self._relative_to()}")
        if not path.is_file():
            raise self.error(field, "not a regular file", path, "Point the field at a file, not a folder")
        if path.stat().st_size == 0:
            raise self.error(field, "file is empty (0 bytes)", path, "Replace the file or remove the field from this record")
        return path


@dataclass
class ModalityBatch:
    """A padded batch of one modality.

    ``data`` has shape (B, ...) with zeros in absent rows, ``present`` (B,) marks rows that
    hold a value, and ``lengths`` (B,) gives the valid length along the last axis of
    ``data`` for modalities of variable length (``None`` for fixed-size data).
    """

    data: torch.Tensor
    present: torch.Tensor
    lengths: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.present.shape[0])

    def select(self, index: torch.Tensor) -> ModalityBatch:
        """Return the rows at ``index`` (a 1-D long tensor)."""
        lengths = None if self.lengths is None else self.lengths[index]
        return ModalityBatch(self.data[index], self.present[index], lengths)

    def to(self, device: torch.device | str) -> ModalityBatch:
        lengths = None if self.lengths is None else self.lengths.to(device)
        return ModalityBatch(self.data.to(device), self.present.to(device), lengths)


class GaussianHead(nn.Module):
    """Projection from backbone features (B, F) to a Gaussian posterior in the latent (B, D)."""

    def __init__(self, feature_dim: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(feature_dim, 2 * latent_dim)

    def forward(self, features: torch.Tensor) -> DiagonalGaussian:
        mean, logvar = self.linear(features).chunk(2, dim=-1)
        return DiagonalGaussian(mean, logvar)


class Encoder(nn.Module):
    """A backbone that maps a batch to features, plus a Gaussian projection head.

    The backbone is called as ``backbone(data, lengths)`` and returns (B, feature_dim), so a
    pretrained network wrapped to that signature can replace the default one.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, latent_dim: int):
        super().__init__()
        self.backbone = backbone
        self.head = GaussianHead(feature_dim, latent_dim)

    def forward(self, batch: ModalityBatch) -> DiagonalGaussian:
        features = self.backbone(batch.data, batch.lengths)  # (B, F)
        return self.head(features)


class Decoder(nn.Module, abc.ABC):
    """Maps latents (B, D) back to a modality, with the likelihood used in training."""

    @abc.abstractmethod
    def log_likelihood(self, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
        """Return log p(x | z) for each row of ``batch``, summed over its valid elements: shape (B,)."""

    @abc.abstractmethod
    def generate(
        self, latents: torch.Tensor, *, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> ModalityBatch:
        """Decode latents (B, D) into data in the space that :meth:`Modality.preprocess` produces.

        ``temperature`` 0 returns the most likely output (mean or greedy decoding); larger
        values sample from the likelihood using ``generator``.
        """


class Modality(abc.ABC):
    """Base class of modality plugins.

    Subclasses set ``name`` (the registry name), ``config_class`` (a frozen subclass of
    :class:`ModalityConfig`) and ``file_suffix`` (the default suffix of saved files).
    One instance serves one field of a model; ``field`` is that field's name and equals
    ``name`` unless a model uses the same modality for several fields.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModalityConfig]] = ModalityConfig
    file_suffix: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Corruption kinds that :meth:`corrupt` implements, each with the levels a robustness
    # evaluation sweeps by default (in the kind's own unit, mildest first).
    corruptions: ClassVar[dict[str, tuple[float, ...]]] = {}

    def __init__(self, config: ModalityConfig | None = None, *, field: str | None = None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.field = field or self.name

    # -- reading -------------------------------------------------------------

    @abc.abstractmethod
    def load(self, value: Any, source: RecordSource) -> Any:
        """Read and validate one value: a path (str or Path) or an in-memory object.

        Raise :class:`~polyfuse.errors.InvalidRecordError` through ``source.error`` when the
        value cannot be used, naming the field, the value and the fix.
        """

    @abc.abstractmethod
    def preprocess(self, raw: Any) -> torch.Tensor:
        """Turn one loaded value into the tensor that the encoder consumes."""

    def prepare(self, value: Any, source: RecordSource = RecordSource()) -> torch.Tensor:
        """Load and preprocess one value."""
        return self.preprocess(self.load(value, source))

    def collate(self, items: Sequence[torch.Tensor | None]) -> ModalityBatch:
        """Stack items into a batch, padding the last axis with zeros and marking absent rows.

        Items that are ``None`` are absent. Subclasses with fixed-size data may keep this
        default; ``lengths`` is filled only when items differ in their last axis.
        """
        present = torch.tensor([item is not None for item in items], dtype=PRESENT_DTYPE)
        values = [item for item in items if item is not None]
        if not values:
            return ModalityBatch(torch.zeros(len(items), 0), present)
        max_length = max(value.shape[-1] for value in values)
        template = values[0]
        data = torch.zeros((len(items), *template.shape[:-1], max_length), dtype=template.dtype)
        lengths = torch.zeros(len(items), dtype=torch.long)
        for row, item in enumerate(items):
            if item is None:
                continue
            data[row, ..., : item.shape[-1]] = item
            lengths[row] = item.shape[-1]
        variable = any(value.shape[-1] != max_length for value in values)
        return ModalityBatch(data, present, lengths if variable else None)

    def augment(self, batch: ModalityBatch, generator: torch.Generator) -> ModalityBatch:
        """Return a randomly perturbed copy of a training batch; the default changes nothing."""
        return batch

    def corrupt(self, item: torch.Tensor, kind: str, level: float, generator: torch.Generator) -> torch.Tensor:
        """Return a corrupted copy of one preprocessed item, for robustness evaluation.

        ``kind`` is one of :attr:`corruptions` and ``level`` its severity in that kind's
        unit. Plugins without corruptions keep this default, which raises ``ValueError``.
        """
        available = ", ".join(self.corruptions) or "none"
        raise ValueError(f"modality '{self.name}' has no corruption {kind!r}; available: {available}")

    # -- networks ------------------------------------------------------------

    @abc.abstractmethod
    def build_encoder(self, latent_dim: int) -> Encoder:
        """Create the encoder from this modality to a posterior over ``latent_dim`` dimensions."""

    @abc.abstractmethod
    def build_decoder(self, latent_dim: int) -> Decoder:
        """Create the decoder from ``latent_dim`` dimensions back to this modality."""

    # -- writing -------------------------------------------------------------

    @abc.abstractmethod
    def postprocess(self, data: torch.Tensor, length: int | None = None) -> Any:
        """Turn one decoded tensor into the modality's native value (image, waveform, text...)."""

    @abc.abstractmethod
    def save(self, value: Any, path: str | Path) -> Path:
        """Write a value returned by :meth:`postprocess` to ``path`` and return the path written."""

    # -- configuration -------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.config)

    @classmethod
    def from_config_dict(cls, data: dict[str, Any], *, field: str | None = None, where: str = "config") -> Modality:
        config = config_from_dict(cls.config_class, data, where)
        return cls(config, field=field)

    def replace_config(self, **changes: Any) -> Modality:
        return type(self)(dataclasses.replace(self.config, **changes), field=self.field)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(field={self.field!r}, config={self.config!r})"
