"""Training one model on one patient-grouped split: the run lifecycle without explanations.

:func:`fit` prepares the run folder (:class:`ctcid.train.TrainingRun`), fits the model family
(:func:`ctcid.train.network.fit_network` or :func:`ctcid.train.trees.fit_trees`), runs the shared finish step
(:func:`ctcid.train.finish.finish`) and completes the run. ``ctcid.workflows.train_model`` adds the explanation
step (feature importance and attributions) before completing (``fit(..., then=explain_run)``), which is what
``ctcid train`` and ``ctcid cv`` run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..evaluate import Split
from ..io import CellDataset
from ..models.registry import ARRAY_MODELS, LINEAR_MODELS, TREE_MODELS
from .config import TrainConfig
from .finish import FitResult, Fitted, finish
from .linear import fit_linear
from .network import fit_network
from .run import TrainingRun
from .trees import fit_trees

__all__ = ["fit", "fit_model", "fit_summary"]


def fit_model(run: TrainingRun, log: Callable[[str], None] | None = None) -> tuple[Fitted, FitResult] | None:
    """Fit the run's model family and finish it (bundle, predictions, metrics); ``None`` in a data-parallel
    worker process. The run is not completed: explanations may follow."""
    model = run.cfg.model
    family = fit_trees if model in TREE_MODELS else fit_linear if model in LINEAR_MODELS else fit_network
    fitted = family(run, log)
    if fitted is None:
        return None
    return fitted, finish(run, fitted)


def fit_summary(fitted: Fitted, result: FitResult) -> dict[str, Any]:
    """The fields a completed ``run.json`` adds."""
    chosen = {"model_selection": fitted.extra["model_selection"]} if "model_selection" in fitted.extra else {}
    return {
        **chosen,
        "accelerator": fitted.accelerator,
        "precision": fitted.precision,
        "best_epoch": fitted.best_epoch,
        "epochs_run": fitted.epochs_run,
        "model_id": fitted.meta.model_id,
        "threshold": result.threshold,
        "calibration": result.calibration.to_dict() if result.calibration else None,
        "validation": result.val_metrics,
    }


def fit(
    ds: CellDataset,
    split: Split,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    then: Callable[[TrainingRun, Fitted, Callable[[str], None] | None], None] | None = None,
) -> FitResult:
    """Train one model on ``split`` (train/val and optional test cells of ``ds``) into the run folder ``out``.

    The calibration map (a prior-shift correction for the class weighting, then Platt scaling) and the threshold
    (max F1 of the CTC class) are fitted on the validation cells only; the test cells, when given, are predicted
    once at the end. In a data-parallel worker process the result is empty (the first process writes the run).
    ``then(run, fitted, log)``, when given, runs after the finish step and before the run is completed (e.g. the
    explanations of ``ctcid.workflows.train_model``).
    """
    run = TrainingRun.prepare(
        ds, split, cfg, out, resume=resume, overwrite=overwrite, restartable=cfg.model not in ARRAY_MODELS
    )
    with run.guard(log):  # a failed run leaves nothing, or its checkpoint for --resume
        done = fit_model(run, log)
        if done is None:  # a data-parallel worker process: the first process writes the run
            return FitResult(run.out, run.out / "model", 0.5, None, None, {}, None, None)
        fitted, result = done
        if then is not None:
            then(run, fitted, log)
        run.complete(**fit_summary(fitted, result))
    return result
