"""Plugin discovery through the ``polyfuse`` entry-point group, and the registries it fills.

Built-in plugins are found exactly like third-party ones. A plugin that fails to import or
to register is skipped with a :class:`~polyfuse.errors.PluginLoadWarning`, unless
``POLYFUSE_STRICT_PLUGINS=1`` makes such failures fatal. ``POLYFUSE_PLUGINS`` limits
which entry points load (a comma-separated list of entry-point names; empty loads none).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

import pluggy

from . import hookspecs
from .errors import PluginLoadError, PluginLoadWarning, RegistryError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "polyfuse"
ONLY_PLUGINS_ENV = "POLYFUSE_PLUGINS"
STRICT_PLUGINS_ENV = "POLYFUSE_STRICT_PLUGINS"
IN_PROCESS = "(in-process)"

# Modality and generator names become JSON keys, file names and CLI values.
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_RECIPE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

T = TypeVar("T")


@dataclass(frozen=True)
class Registration(Generic[T]):
    """One class contributed by a plugin, with its provenance."""

    name: str
    cls: type[T]
    plugin: str
    distribution: str
    version: str | None


@dataclass
class PluginInfo:
    """What ``polyfuse plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str
    version: str | None
    status: str  # "loaded", "failed" or "disabled"
    error: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "registered": {kind: sorted(names) for kind, names in self.registered.items()},
        }


class Registry(Generic[T]):
    """Named classes of one kind (modality, generator, dataset recipe)."""

    def __init__(self, kind: str, base: type, pattern: re.Pattern[str]):
        self.kind = kind
        self.base = base
        self.pattern = pattern
        self._entries: dict[str, Registration[T]] = {}

    def add(self, cls: type[T], plugin: str, distribution: str, version: str | None) -> Registration[T]:
        """Validate ``cls`` and record it under its ``name``; raise ``TypeError``/``ValueError`` if invalid."""
        if not isinstance(cls, type) or not issubclass(cls, self.base):
            raise TypeError(
                f"plugin '{plugin}' registered {cls!r} as a {self.kind}, "
                f"but it is not a subclass of {self.base.__module__}.{self.base.__qualname__}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not self.pattern.match(name):
            raise ValueError(
                f"plugin '{plugin}' registered {self.kind} {cls.__qualname__} with invalid name {name!r}; "
                f"set the class attribute 'name' to a string matching {self.pattern.pattern}"
            )
        if name in self._entries:
            taken = self._entries[name]
            raise ValueError(
                f"plugin '{plugin}' ({distribution}) registered {self.kind} '{name}', which plugin "
                f"'{taken.plugin}' ({taken.distribution}) already provides; rename one of them"
            )
        entry = Registration(name, cls, plugin, distribution, version)
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> type[T]:
        return self.entry(name).cls

    def entry(self, name: str) -> Registration[T]:
        try:
            return self._entries[name]
        except KeyError:
            available = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(
                f"no {self.kind} named '{name}' is registered (available: {available}); "
                f"install the plugin that provides it, or check {ONLY_PLUGINS_ENV}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[T]]:
        return iter(self._entries.values())


class PluginHost:
    """The pluggy manager plus the registries that plugins fill."""

    def __init__(self, load_entry_points: bool = True):
        from .datasets import DatasetRecipe
        from .generator import Generator
        from .modality import Modality

        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.modalities: Registry[Modality] = Registry("modality", Modality, _IDENTIFIER)
        self.generators: Registry[Generator] = Registry("generator", Generator, _IDENTIFIER)
        self.datasets: Registry[DatasetRecipe] = Registry("dataset recipe", DatasetRecipe, _RECIPE_NAME)
        self._hooks = {
            "modalities": ("register_modalities", self.modalities),
            "generators": ("register_generators", self.generators),
            "datasets": ("register_datasets", self.datasets),
        }
        if load_entry_points:
            self._load_entry_points()

    def register(self, plugin: object, name: str, distribution: str = IN_PROCESS, version: str | None = None) -> PluginInfo:
        """Register an already imported plugin object (a module or an instance) and collect its contributions."""
        info = PluginInfo(name, _describe(plugin), distribution, version, "loaded")
        self.plugins[name] = info
        self.manager.register(plugin, name=name)
        try:
            self._collect(plugin, info)
        except Exception:
            self.manager.unregister(plugin)
            del self.plugins[name]
            raise
        return info

    def unregister(self, name: str) -> None:
        """Remove a plugin and everything it registered (used by tests and hosts that reload)."""
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin)
        self.plugins.pop(name, None)
        for _, registry in self._hooks.values():
            for entry in [e for e in registry if e.plugin == name]:
                del registry._entries[entry.name]

    def _load_entry_points(self) -> None:
        only = _only_plugins()
        seen: set[tuple[str, str]] = set()
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            # The same distribution can be visible twice (an editable install beside a copy).
            key = (entry_point.name, entry_point.value)
            if key in seen:
                continue
            seen.add(key)
            distribution, version = _distribution_of(entry_point)
            if only is not None and entry_point.name not in only:
                self.plugins[entry_point.name] = PluginInfo(
                    entry_point.name, entry_point.value, distribution, version, "disabled"
                )
                continue
            self._load_entry_point(entry_point, distribution, version)

    def _load_entry_point(self, entry_point: importlib.metadata.EntryPoint, distribution: str, version: str | None) -> None:
        try:
            plugin = entry_point.load()
        except Exception as error:  # noqa: BLE001 - a plugin import may raise anything; isolate it
            self._fail(entry_point.name, entry_point.value, distribution, version, "failed to import", error)
            return
        try:
            self.register(plugin, entry_point.name, distribution, version)
        except (TypeError, ValueError, PluginLoadError) as error:
            self._fail(entry_point.name, entry_point.value, distribution, version, "failed to register", error)
        except Exception as error:  # noqa: BLE001 - a register hook may raise anything; isolate it
            self._fail(entry_point.name, entry_point.value, distribution, version, "raised while registering", error)

    def _fail(self, name: str, module: str, distribution: str, version: str | None, what: str, error: BaseException) -> None:
        described = f"{type(error).__name__}: {error}"
        self.plugins[name] = PluginInfo(name, module, distribution, version, "failed", described)
        message = (
            f"polyfuse plugin '{name}' from distribution {distribution} {version or ''} {what} and was skipped: "
            f"{described}. Set {STRICT_PLUGINS_ENV}=1 to make this an error, or uninstall the distribution."
        ).replace("  ", " ")
        if _strict():
            raise PluginLoadError(message) from error
        warnings.warn(message, PluginLoadWarning, stacklevel=2)

    def _collect(self, plugin: object, info: PluginInfo) -> None:
        """Call each contribution hook of one plugin with a ``register`` callback bound to it."""
        for kind, (hook_name, registry) in self._hooks.items():
            for implementation in getattr(self.manager.hook, hook_name).get_hookimpls():
                if implementation.plugin is not plugin:
                    continue
                names: list[str] = info.registered.setdefault(kind, [])

                def register(cls: type, _registry: Registry = registry, _names: list[str] = names) -> None:
                    entry = _registry.add(cls, info.name, info.distribution, info.version)
                    _names.append(entry.name)

                arguments = {"register": register} if "register" in implementation.argnames else {}
                implementation.function(**arguments)
            if not info.registered.get(kind):
                info.registered.pop(kind, None)


_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_host() -> PluginHost:
    """Return the process-wide plugin host, loading entry points on first use."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
            loaded = [p.name for p in _host.plugins.values() if p.status == "loaded"]
            logger.info("Loaded polyfuse plugins: %s", ", ".join(loaded) or "none")
        return _host


def reset_host() -> None:
    """Forget the process-wide host so the next :func:`get_host` discovers plugins again."""
    global _host
    with _host_lock:
        _host = None


def get_modality_class(name: str) -> type:
    return get_host().modalities.get(name)


def get_generator_class(name: str) -> type:
    return get_host().generators.get(name)


def get_dataset_recipe(name: str) -> type:
    return get_host().datasets.get(name)


def _only_plugins() -> set[str] | None:
    value = os.environ.get(ONLY_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _strict() -> bool:
    return os.environ.get(STRICT_PLUGINS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "(unknown distribution)", None
    return dist.metadata["Name"], dist.version


def _describe(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__qualname__
