"""The one progress-bar helper of polyfuse, which a host application can silence or redirect.

Bars go to stderr through tqdm. ``POLYFUSE_PROGRESS=0`` or :func:`set_progress` turns them
off; a host may also install its own factory, for example to forward updates to a GUI.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")

ProgressFactory = Callable[..., Any]

_enabled: bool | None = None
_factory: ProgressFactory | None = None


def set_progress(enabled: bool | None = None, factory: ProgressFactory | None = None) -> None:
    """Turn bars on or off (``None`` restores the default) and optionally replace the tqdm factory.

    ``factory`` is called like ``tqdm(iterable, total=..., desc=..., unit=...)`` and must
    return an iterable with ``update``, ``set_postfix`` and ``close`` methods.
    """
    global _enabled, _factory
    _enabled = enabled
    _factory = factory


def progress_enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return os.environ.get("POLYFUSE_PROGRESS", "1").strip().lower() not in {"0", "false", "no", "off"}


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    **kwargs: Any,
) -> Any:
    """Wrap ``iterable`` in a progress bar, or return a manual bar when ``iterable`` is None."""
    if _factory is not None:
        return _factory(iterable, total=total, desc=desc, unit=unit, disable=disable or not progress_enabled(), **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable or not progress_enabled(), dynamic_ncols=True, **kwargs)
