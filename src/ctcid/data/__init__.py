"""The data layer shared by training and prediction: batches from the packed store, channel scaling, the one
preprocessing of an image batch, and the feature inputs of System B's models.

Examples
--------
>>> from ctcid.data import training_samples
>>> training_samples([4, 7], channel_idx=[0], extra_idx=[1], mode="extra").tolist()
[[4, 0], [7, 0], [4, 1], [7, 1]]
"""

from __future__ import annotations

from .batches import PRELOAD_BYTES, BatchPlan, StoreBatches, available_memory, training_samples
from .features import feature_matrix, select_features
from .normalise import (
    BORDER_PX,
    Normalizer,
    border_median,
    border_strips,
    channel_normalisation,
    stand_in_normalisation,
)
from .preprocess import network_inputs, prepare_batch

__all__ = [
    "BORDER_PX",
    "PRELOAD_BYTES",
    "BatchPlan",
    "Normalizer",
    "StoreBatches",
    "available_memory",
    "border_median",
    "border_strips",
    "channel_normalisation",
    "feature_matrix",
    "network_inputs",
    "prepare_batch",
    "select_features",
    "stand_in_normalisation",
    "training_samples",
]
