"""The command line: the only package that imports typer and rich."""

from .core import app, main

__all__ = ["app", "main"]
