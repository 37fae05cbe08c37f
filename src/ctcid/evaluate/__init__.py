"""Honest evaluation: patient-grouped splits, CTC-class metrics with patient-level bootstrap intervals,
calibration, per-patient count errors, and the figures and tables of a run.

Examples
--------
>>> from ctcid.evaluate import threshold_max_f1, classification_metrics
>>> t = threshold_max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
>>> classification_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], t)["f1"]
0.8
"""

from __future__ import annotations

from .metrics import (
    METRICS,
    apply_temperature,
    bootstrap_metrics,
    classification_metrics,
    count_errors,
    evaluate_predictions,
    fit_temperature,
    summarise_folds,
    threshold_max_f1,
    to_markdown,
)
from .plots import (
    plot_calibration,
    plot_confusion,
    plot_model_comparison,
    plot_pr_roc,
    plot_training_curves,
)
from .splits import (
    FOLD_TABLE_COLUMNS,
    ROLES,
    Split,
    check_no_leakage,
    fold_table,
    patient_folds,
    read_fold_table,
    splits_from_table,
    train_val_split,
    write_fold_table,
)

__all__ = [
    "FOLD_TABLE_COLUMNS",
    "METRICS",
    "ROLES",
    "Split",
    "apply_temperature",
    "bootstrap_metrics",
    "check_no_leakage",
    "classification_metrics",
    "count_errors",
    "evaluate_predictions",
    "fit_temperature",
    "fold_table",
    "patient_folds",
    "plot_calibration",
    "plot_confusion",
    "plot_model_comparison",
    "plot_pr_roc",
    "plot_training_curves",
    "read_fold_table",
    "splits_from_table",
    "summarise_folds",
    "threshold_max_f1",
    "to_markdown",
    "train_val_split",
    "write_fold_table",
]
