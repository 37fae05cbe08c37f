"""What several benchmarks share: the training options of a benchmark's cross-validation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["cv_config"]


def cv_config(model: str, channels: Iterable[str], epochs: int, **fields: Any) -> Any:
    """The :class:`~ctcid.train.TrainConfig` of a benchmark: ``model`` on ``channels`` for ``epochs`` epochs, every
    one of them run (the patience is as long), without a progress bar; ``fields`` set the other options.

    >>> cv_config("features_gbm", ["BF"], 3, seed=1).patience
    3
    """
    from ..train import TrainConfig

    fields.update(model=model, channels=list(channels), epochs=epochs, patience=epochs, progress=False)
    return TrainConfig(**fields)
