"""Exception and warning classes that polyfuse raises for user and plugin mistakes."""

from __future__ import annotations

from pathlib import Path


class PolyfuseError(Exception):
    """Base class of every error that polyfuse raises on purpose."""


class ConfigError(PolyfuseError, ValueError):
    """A configuration value is invalid; the message names the field and the accepted values."""


class PluginError(PolyfuseError):
    """A plugin could not be loaded or registered something invalid."""


class PluginLoadError(PluginError):
    """A plugin failed to import while failures were made fatal (``POLYFUSE_STRICT_PLUGINS``)."""


class RegistryError(PluginError, KeyError):
    """A name was not found in a registry, or was registered twice."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a registry message reads better unquoted.
        return str(self.args[0]) if self.args else ""


class InvalidRecordError(PolyfuseError, ValueError):
    """One record of a manifest, or one in-memory value, cannot be used.

    The message names where the record comes from (manifest file and line, or the
    caller's description), the field, the value or resolved path, the reason and the fix.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "input",
        field: str | None = None,
        value: object = None,
        fix: str | None = None,
    ):
        self.reason = reason
        self.source = source
        self.field = field
        self.value = value
        self.fix = fix
        where = source if field is None else f"{source}, field '{field}'"
        message = f"{where}: {reason}"
        if value is not None:
            shown = str(value) if isinstance(value, Path) else repr(value)
            if len(shown) > 120 and not isinstance(value, Path):
                shown = shown[:117] + "..."
            message += f" (value: {shown})"
        if fix:
            message += f". {fix}"
        super().__init__(message)

    def with_fix(self, extra: str) -> InvalidRecordError:
        """Return a copy whose fix ends with ``extra``."""
        fix = f"{self.fix}. {extra}" if self.fix else extra
        return InvalidRecordError(self.reason, source=self.source, field=self.field, value=self.value, fix=fix)


class NonFiniteLossError(PolyfuseError, FloatingPointError):
    """A loss term became NaN or infinite during training; the message names the term."""


class CheckpointError(PolyfuseError):
    """A checkpoint or saved model is missing, unreadable or does not match the request."""


class PolyfuseWarning(UserWarning):
    """Base class of the warnings that polyfuse emits."""


class PluginLoadWarning(PolyfuseWarning):
    """A plugin failed to import or to register and was skipped."""


class SkippedRecordWarning(PolyfuseWarning):
    """An invalid record was skipped because skipping was requested."""
