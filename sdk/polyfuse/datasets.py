"""The data set recipe contract: builders that write real files plus manifests.

Recipes make training go through the same loaders as a user's data: they write images,
audio, sensor series and captions as ordinary files, then one manifest per split.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass
class DatasetBuildOutput:
    """What a recipe wrote."""

    out: Path
    manifests: dict[str, Path]  # split name ("train", "test") to manifest path
    counts: dict[str, int]  # split name to number of records
    config: Path | None = None  # suggested run config for ``polyfuse train --config``
    notes: list[str] = field(default_factory=list)


class DatasetRecipe(abc.ABC):
    """Base class of data set recipes registered through ``register_datasets``.

    Subclasses set ``name`` (used by ``polyfuse datasets build NAME``), ``description``,
    ``needs_source`` (whether source files are required) and ``can_fetch`` (whether
    ``fetch=True`` can download them).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_source: ClassVar[bool] = False
    can_fetch: ClassVar[bool] = False

    @abc.abstractmethod
    def build(
        self,
        out: Path,
        *,
        source: Path | None = None,
        fetch: bool = False,
        seed: int = 0,
        limit: int | None = None,
        progress: bool = True,
    ) -> DatasetBuildOutput:
        """Write the data set under ``out`` and return where its manifests are.

        :param source: folder that holds the source files in the recipe's documented layout.
        :param fetch: download the public originals (checked against sha256 sums) when
            ``source`` lacks them.
        :param seed: seed of every random choice, so a build is reproducible.
        :param limit: at most this many records per split, for quick runs; ``None`` for all.
        """
