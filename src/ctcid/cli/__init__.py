"""The ``ctcid`` command line."""

from __future__ import annotations

from .main import app, run

__all__ = ["app", "run"]
