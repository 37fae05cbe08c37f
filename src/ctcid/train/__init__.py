"""Training: the run lifecycle (prepare, fit one model family, finish, complete), the Lightning module and its
callbacks, and every option of a run.

Examples
--------
>>> from ctcid.train import TrainConfig
>>> TrainConfig(model="resnet50", channels=["BF"]).loss
'weighted_bce'
"""

from __future__ import annotations

from .config import FEATURE_MODELS, TrainConfig
from .engine import fit, fit_model, fit_summary
from .finish import FitResult, Fitted, calibrate_on_validation, finish, prior_shift_of
from .run import RUN_FILE, TrainingRun, is_complete

__all__ = [
    "FEATURE_MODELS",
    "RUN_FILE",
    "FitResult",
    "Fitted",
    "TrainConfig",
    "TrainingRun",
    "calibrate_on_validation",
    "finish",
    "fit",
    "fit_model",
    "fit_summary",
    "is_complete",
    "prior_shift_of",
]
