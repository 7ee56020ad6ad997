"""The polyfuse release number, read by the build backend and recorded in saved files."""

__version__ = "0.1.0"
