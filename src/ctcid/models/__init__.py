"""Models: one factory over a registry (timm backbones and ctcid's own), and the model bundle.

Each name loads its submodule on first use (:mod:`ctcid._lazy`), so that :mod:`ctcid.models.calibration` and
code reading a bundle's metadata do not import torch and timm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "bundle": [
            "Bundle",
            "BundleMeta",
            "FeatureInputs",
            "TrainingRecord",
            "check_compatible",
            "load_bundle",
            "read_meta",
            "save_bundle",
        ],
        "calibration": ["Calibration", "logit"],
        "fusion": ["DualBranch", "FeatureMLP", "FeatureScaler", "model_inputs"],
        "gbm": ["TreeEnsemble"],
        "linear": ["LinearModel"],
        "registry": [
            "SYSTEM_A_BACKBONES",
            "create_model",
            "is_model",
            "list_models",
            "load_weights",
            "register_model",
        ],
    },
    __all__,
)
