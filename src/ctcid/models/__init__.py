"""Models: one factory over a registry (timm backbones and ctcid's own), and the model bundle."""

from __future__ import annotations

from .bundle import (
    Bundle,
    BundleMeta,
    FeatureInputs,
    TrainingRecord,
    check_compatible,
    load_bundle,
    read_meta,
    save_bundle,
)
from .calibration import Calibration, logit
from .fusion import DualBranch, FeatureMLP, FeatureScaler, model_inputs
from .gbm import TreeEnsemble
from .linear import LinearModel
from .registry import SYSTEM_A_BACKBONES, create_model, is_model, list_models, load_weights, register_model

__all__ = [
    "SYSTEM_A_BACKBONES",
    "Bundle",
    "BundleMeta",
    "Calibration",
    "DualBranch",
    "FeatureInputs",
    "FeatureMLP",
    "FeatureScaler",
    "LinearModel",
    "TrainingRecord",
    "TreeEnsemble",
    "check_compatible",
    "create_model",
    "is_model",
    "list_models",
    "load_bundle",
    "load_weights",
    "logit",
    "model_inputs",
    "read_meta",
    "register_model",
    "save_bundle",
]
