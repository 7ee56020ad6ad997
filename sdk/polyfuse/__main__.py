"""Run the command-line interface with ``python -m polyfuse``."""

from .cli import main

main()
