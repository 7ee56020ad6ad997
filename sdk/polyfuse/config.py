"""JSON round trip for the frozen config dataclasses of models, modalities and training."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return the fields of a config dataclass as plain JSON values (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Build ``cls`` from JSON values, rejecting unknown keys with the list of known ones.

    Lists become tuples where the field is annotated as a tuple, so configs stay hashable.
    ``where`` names the source in error messages (a file and section, for example).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(value, hints.get(name)) for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON config file, with an error that names the file and the parse position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} line {error.lineno} column {error.colno}: invalid JSON: {error.msg}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds (for ``__post_init__``)."""
    if not condition:
        raise ConfigError(message)


def _coerce(value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if isinstance(value, list) and (origin is tuple or annotation is tuple or _optional_tuple(annotation)):
        return tuple(value)
    return value


def _optional_tuple(annotation: Any) -> bool:
    return any(typing.get_origin(arg) is tuple for arg in typing.get_args(annotation))
