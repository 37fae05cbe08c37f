"""The step every model family shares after fitting: calibration and threshold on the validation patients, the
model bundle, the predictions of the validation and test cells, and the test metrics and counts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluate import (
    PATIENTS_UNKNOWN,
    ErrorRates,
    classification_metrics,
    count_table,
    decision_threshold,
    fit_calibration,
    per_patient_confusion,
    plot_training_curves,
    predictions_frame,
    write_metrics,
)
from ..io import CellDataset
from ..io._atomic import atomic_write_text
from ..models import BundleMeta, Calibration, save_bundle
from .config import TrainConfig
from .run import TrainingRun

__all__ = [
    "FitResult",
    "Fitted",
    "calibrate_on_validation",
    "finish",
    "prior_shift_of",
    "write_predictions",
]


@dataclass
class Fitted:
    """What fitting one model family hands to :func:`finish`.

    ``meta`` holds the bundle fields the family decides (architecture, channels, normalisation, sizes, inputs,
    features); ``logits(cells)`` gives the raw logits of any cells; ``prior_shift`` is the logit shift the class
    weighting introduced (see :func:`prior_shift_of`); ``history`` the per-epoch table when the family did not
    write ``history.csv`` itself; ``features`` the feature matrix a feature model reads (for explanation).
    """

    model: Any
    logits: Callable[[np.ndarray], np.ndarray]
    meta: BundleMeta
    prior_shift: float
    best_epoch: int | None
    epochs_run: int
    accelerator: str
    precision: str
    history: pd.DataFrame | None = None
    features: np.ndarray | None = None
    feature_baseline: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    """What a finished run produced."""

    run_dir: Path
    bundle: Path
    threshold: float
    calibration: Calibration | None
    best_epoch: int | None
    val_metrics: dict[str, float]
    test_metrics: dict[str, Any] | None
    test_predictions: pd.DataFrame | None


def prior_shift_of(cfg: TrainConfig, y_train: np.ndarray, pos_weight: float) -> float:
    """The logit shift the training's class weighting introduces, undone before calibration.

    A loss that weights CTCs by ``w`` (``weighted_bce``, ``focal``) and a sampler that draws the classes equally
    often (odds ``negatives / positives``) each multiply the odds the model learns by their factor, so its logit
    estimates ``log(factor) + logit(P(CTC))``; the shift is the log of the product of the factors.

    >>> prior_shift_of(TrainConfig(loss="weighted_bce"), np.array([0, 0, 0, 1]), pos_weight=3.0) == math.log(3.0)
    True
    """
    shift = math.log(pos_weight) if cfg.loss in ("weighted_bce", "focal") else 0.0
    if cfg.sampler == "balanced":
        pos, neg = int((y_train == 1).sum()), int((y_train == 0).sum())
        shift += math.log(max(neg, 1) / max(pos, 1))
    return shift


def calibrate_on_validation(
    val_logits: np.ndarray,
    y_val: np.ndarray,
    prior_shift: float,
    method: str,
    groups: np.ndarray | None = None,
    threshold_rule: str = "max-f1",
) -> tuple[Calibration, float, dict[str, float]]:
    """Calibration map, decision threshold (``threshold_rule`` on the calibrated probabilities, see
    :func:`ctcid.evaluate.decision_threshold`) and validation metrics, all from the validation patients only
    (``groups``: each validation cell's patient)."""
    calibration = fit_calibration(val_logits, y_val, prior_shift=prior_shift, method=method, groups=groups)
    p_val = calibration.probabilities(val_logits)
    threshold = decision_threshold(y_val, p_val, threshold_rule)
    return calibration, threshold, classification_metrics(y_val, p_val, threshold)


def write_predictions(
    out: Path,
    ds: CellDataset,
    cells: np.ndarray,
    logits: np.ndarray,
    meta: BundleMeta,
    cfg: TrainConfig,
    prefix: str,
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """``{prefix}predictions.csv`` of ``cells``; for test cells also their metrics, counts and plots."""
    calibration = meta.calibration_map()
    frame = predictions_frame(ds, cells, logits, calibration, meta.threshold, meta.model_id)
    atomic_write_text(out / f"{prefix}predictions.csv", frame.to_csv(index=False))
    if prefix != "test_":
        return frame, None
    rates = ErrorRates.from_metrics(meta.metrics)
    counts = count_table(frame, calibration, rates)
    marks = {"patients_unknown": PATIENTS_UNKNOWN} if cfg.samples_unknown else None
    summary = write_metrics(
        out, frame, counts, threshold=meta.threshold, n_boot=cfg.n_boot, seed=cfg.seed, prefix=prefix, extra=marks
    )
    return frame, summary


def finish(run: TrainingRun, fitted: Fitted) -> FitResult:
    """Calibrate and choose the threshold on the validation cells, save the bundle, write the validation and
    test predictions (with the test metrics and counts) and the training curves."""
    cfg, out = run.cfg, run.out
    val_logits = fitted.logits(run.val_cells)
    y_val = run.labels[run.val_cells].astype(int)
    calibration, threshold, val_metrics = calibrate_on_validation(
        val_logits,
        y_val,
        fitted.prior_shift,
        cfg.calibration,
        groups=run.sample_ids[run.val_cells],
        threshold_rule=cfg.threshold_rule,
    )
    meta = fitted.meta
    meta.threshold = threshold
    meta.calibration = calibration
    meta.training = run.training_record(fitted.best_epoch, fitted.epochs_run)
    calls = calibration.probabilities(val_logits) >= threshold
    meta.metrics = {
        "validation": val_metrics,
        "validation_patients": per_patient_confusion(run.sample_ids[run.val_cells], y_val, calls),
    }
    save_bundle(out / "model", fitted.model, meta, overwrite=True)
    write_predictions(out, run.ds, run.val_cells, val_logits, meta, cfg, "val_")
    history = fitted.history
    if history is not None:
        atomic_write_text(out / "history.csv", history.to_csv(index=False))
    elif (out / "history.csv").is_file():
        history = pd.read_csv(out / "history.csv")
    if history is not None and len(history):
        plot_training_curves(history, out / "training_curves.png")
    test_summary, test_frame = None, None
    if len(run.test_cells):
        test_logits = fitted.logits(run.test_cells)
        test_frame, test_summary = write_predictions(out, run.ds, run.test_cells, test_logits, meta, cfg, "test_")
    return FitResult(
        out, out / "model", threshold, calibration, fitted.best_epoch, val_metrics, test_summary, test_frame
    )
