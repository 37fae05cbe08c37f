"""Training: the data path from the store, the Lightning module, run folders, CV and ablations."""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

__all__ = ["FitResult", "TrainConfig", "fit"]


def __getattr__(name: str) -> Any:  # the engine imports the predictor, which imports this package's data path
    if name in ("fit", "FitResult"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
