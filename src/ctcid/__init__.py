"""ctcid: circulating tumour cell identification from single-cell images."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import CtcidError, InputError

try:
    __version__ = version("ctcid")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["CtcidError", "InputError", "__version__"]
