"""Applying a trained model to cells."""

from __future__ import annotations

from .infer import autocast_dtype, bundle_features, bundle_inputs, bundle_logits, infer_logits, resolve_device
from .run import PredictResult, expected_counts, predict

__all__ = [
    "PredictResult",
    "autocast_dtype",
    "bundle_features",
    "bundle_inputs",
    "bundle_logits",
    "expected_counts",
    "infer_logits",
    "predict",
    "resolve_device",
]
