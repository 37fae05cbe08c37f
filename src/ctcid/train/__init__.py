"""Training: the run lifecycle (prepare, fit one model family, finish, complete), the Lightning module and its
callbacks, and every option of a run.

Examples
--------
>>> from ctcid.train import TrainConfig
>>> TrainConfig(model="resnet50", channels=["BF"]).loss
'weighted_bce'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
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

# the options (TrainConfig) load without torch; fitting, and torch, on first use
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "config": ["FEATURE_MODELS", "TrainConfig"],
        "engine": ["fit", "fit_model", "fit_summary"],
        "finish": ["FitResult", "Fitted", "calibrate_on_validation", "finish", "prior_shift_of"],
        "run": ["RUN_FILE", "TrainingRun", "is_complete"],
    },
    __all__,
)
