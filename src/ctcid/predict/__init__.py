"""Applying a trained model to cells."""

from __future__ import annotations

from .evaluate import EvaluateResult, evaluate_bundle
from .infer import bundle_features, bundle_inputs, bundle_logits, infer_bundle, infer_logits
from .run import PredictResult, predict, sample_counts

__all__ = [
    "EvaluateResult",
    "PredictResult",
    "bundle_features",
    "bundle_inputs",
    "bundle_logits",
    "evaluate_bundle",
    "infer_bundle",
    "infer_logits",
    "predict",
    "sample_counts",
]
