"""Honest evaluation: patient-grouped splits, CTC-class metrics with bootstrap intervals, calibration on
validation patients, per-sample count estimators with intervals, and the figures and tables of a run.

Examples
--------
>>> from ctcid.evaluate import threshold_max_f1, classification_metrics
>>> t = threshold_max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
>>> classification_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], t)["f1"]
0.8
"""

from __future__ import annotations

from .calibration import ECE_BINS, Calibration, expected_calibration_error, fit_calibration
from .counts import (
    COUNT_METHODS,
    DEFAULT_COUNT_METHOD,
    ErrorRates,
    adjusted_count,
    between_patient_variance,
    count_interval,
    count_table,
    coverage_summary,
    default_count_method,
    expected_count,
    per_patient_confusion,
)
from .frames import PREDICTION_COLUMNS, predictions_frame, uncertainty, write_metrics
from .metrics import (
    COUNT_METRICS,
    METRICS,
    MIN_CTC_PATIENTS,
    MIN_PATIENTS,
    THRESHOLD_RULES,
    bootstrap_metrics,
    classification_metrics,
    decision_threshold,
    evaluate_predictions,
    interval_note,
    paired_difference,
    summarise_folds,
    threshold_half_max_f1,
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
    NO_PATIENTS_HINT,
    PATIENTS_UNKNOWN,
    ROLES,
    Split,
    check_no_leakage,
    fold_table,
    patient_folds,
    read_fold_table,
    split_groups,
    splits_from_table,
    train_val_split,
    write_fold_table,
)

__all__ = [
    "COUNT_METHODS",
    "COUNT_METRICS",
    "DEFAULT_COUNT_METHOD",
    "ECE_BINS",
    "FOLD_TABLE_COLUMNS",
    "METRICS",
    "MIN_CTC_PATIENTS",
    "MIN_PATIENTS",
    "NO_PATIENTS_HINT",
    "PATIENTS_UNKNOWN",
    "PREDICTION_COLUMNS",
    "ROLES",
    "THRESHOLD_RULES",
    "Calibration",
    "ErrorRates",
    "Split",
    "adjusted_count",
    "between_patient_variance",
    "bootstrap_metrics",
    "check_no_leakage",
    "classification_metrics",
    "count_interval",
    "count_table",
    "coverage_summary",
    "decision_threshold",
    "default_count_method",
    "evaluate_predictions",
    "expected_calibration_error",
    "expected_count",
    "fit_calibration",
    "fold_table",
    "interval_note",
    "paired_difference",
    "patient_folds",
    "per_patient_confusion",
    "plot_calibration",
    "plot_confusion",
    "plot_model_comparison",
    "plot_pr_roc",
    "plot_training_curves",
    "predictions_frame",
    "read_fold_table",
    "split_groups",
    "splits_from_table",
    "summarise_folds",
    "threshold_half_max_f1",
    "threshold_max_f1",
    "to_markdown",
    "train_val_split",
    "uncertainty",
    "write_fold_table",
    "write_metrics",
]
