"""What the two feature models (``features_logreg``, ``features_gbm``) share: the feature matrix they read, the
class balancing and logit shift of their training, and the bundle fields and result of a fit."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..data import feature_matrix
from ..models import BundleMeta
from .config import TrainConfig
from .finish import Fitted
from .network import feature_spec
from .run import TrainingRun

__all__ = ["balanced_shift", "feature_fitted", "training_features"]


def training_features(run: TrainingRun, say: Callable[[str], None]) -> tuple[np.ndarray, list[str]]:
    """The feature matrix (float64, every cell of the run's dataset) and the feature names."""
    cfg = run.cfg
    say("segmentation and hand-crafted features (computed once, cached in the dataset)")
    feats, names = feature_matrix(run.ds, cfg.segmentation, cfg.features, channels=cfg.channels)
    return feats.astype(np.float64), names


def balanced_shift(cfg: TrainConfig, y_train: np.ndarray) -> tuple[bool, float]:
    """Whether the training weights the classes equally, and the logit shift that weighting introduces.

    Balanced class weights multiply the CTC odds by negatives / positives: the shift is undone before calibration.

    >>> balanced_shift(TrainConfig(loss="weighted_bce"), np.array([0, 0, 0, 1]))
    (True, 1.0986122886681098)
    """
    balanced = cfg.loss in ("weighted_bce", "focal") or cfg.sampler == "balanced"
    neg, pos = int((y_train == 0).sum()), int((y_train == 1).sum())
    return balanced, math.log(max(neg, 1) / max(pos, 1)) if balanced else 0.0


def feature_fitted(
    run: TrainingRun,
    architecture: str,
    model: Any,
    X: np.ndarray,
    names: list[str],
    model_kwargs: dict[str, Any],
    *,
    prior_shift: float,
    best_epoch: int,
    history: pd.DataFrame,
    feature_baseline: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> Fitted:
    """The result of fitting a feature model, which scores cells with ``model.decision_function(X[cells])``."""
    cfg, ds = run.cfg, run.ds
    meta = BundleMeta(
        architecture=architecture,
        channels=list(cfg.channels),
        normalisation={},
        crop_size=list(ds.crop_size),
        input_size=ds.crop_size[0],
        pixel_size_um=ds.pixel_size_um,
        model_kwargs=model_kwargs,
        inputs=["features"],
        features=feature_spec(cfg, names),
    )
    return Fitted(
        model=model,
        logits=lambda cells: model.decision_function(X[cells]),
        meta=meta,
        prior_shift=prior_shift,
        best_epoch=best_epoch,
        epochs_run=len(history),
        accelerator="cpu",
        precision="float64",
        history=history,
        features=X,
        feature_baseline=feature_baseline,
        extra=extra or {},
    )
