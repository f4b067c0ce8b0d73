"""The command line: the only package that imports typer and rich.

Importing it registers every command on ``app``; the order of the imports below is the order
of the commands in ``canopycli --help``.
"""

from . import push  # noqa: F401  (push, sync, retry)

# isort: split
from . import campaigns, config, engagements, relay, runs, sandbox, state  # noqa: F401
from .core import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
