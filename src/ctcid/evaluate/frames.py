"""Per-cell prediction tables and the files that evaluate them (metrics, counts, plots).

Training runs (validation and test cells), cross-validation (pooled out-of-fold cells), ``ctcid evaluate`` and
``ctcid predict`` all build their tables here, so every output has the same columns and the same meaning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from ..io import CellDataset
from ..io._atomic import atomic_write_text
from ..models.calibration import Calibration, logit
from .counts import coverage_summary
from .metrics import evaluate_predictions

__all__ = ["PREDICTION_COLUMNS", "predictions_frame", "uncertainty", "write_metrics"]

#: Columns of a predictions table, in order.
PREDICTION_COLUMNS = (
    "cell_id",
    "sample_id",
    "label",
    "logit",
    "p_ctc",
    "call",
    "uncertainty",
    "qc_flags",
    "model_id",
)


def uncertainty(calibrated_logits: object, threshold: float) -> np.ndarray:
    """How undecided each call is: 1 where a cell's calibrated logit equals the threshold's, falling to 0 far
    from it (``1 - |2 sigmoid(z - logit(threshold)) - 1|``), so a review queue ranked by it starts at the cells
    whose call would flip first.

    >>> uncertainty([0.0, 2.0, 5.0], threshold=0.5).round(3).tolist()
    [1.0, 0.238, 0.013]
    """
    z = np.asarray(calibrated_logits, dtype=np.float64)
    return 1.0 - np.abs(2.0 * expit(z - float(logit(threshold))) - 1.0)


def predictions_frame(
    ds: CellDataset,
    cells: np.ndarray,
    logits: np.ndarray,
    calibration: Calibration,
    threshold: float,
    model_id: str,
) -> pd.DataFrame:
    """Per-cell predictions (:data:`PREDICTION_COLUMNS`): ids, label, the model's raw ``logit``, calibrated
    ``p_ctc``, ``call`` at ``threshold``, ``uncertainty`` (:func:`uncertainty`), QC flags, model id."""
    t = ds.table.iloc[np.asarray(cells, np.int64)]
    p = calibration.probabilities(logits)
    return pd.DataFrame(
        {
            "cell_id": t["cell_id"].to_numpy(),
            "sample_id": t["sample_id"].to_numpy(),
            "label": t["label"].to_numpy(),
            "logit": np.asarray(logits, dtype=np.float64),
            "p_ctc": p,
            "call": np.where(p >= threshold, "ctc", "wbc"),
            "uncertainty": uncertainty(calibration.logits(logits), threshold),
            "qc_flags": t["qc_flags"].to_numpy(),
            "model_id": model_id,
        }
    )


def write_metrics(
    out: Path,
    frame: pd.DataFrame,
    counts: pd.DataFrame,
    *,
    threshold: float | None,
    n_boot: int,
    seed: int,
    prefix: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics with bootstrap intervals, the per-sample count table and the four plots, for labelled rows.

    Calls are the frame's ``call`` column (each fold's own threshold for pooled out-of-fold rows); ``threshold``
    is only drawn on the PR/ROC plot. Writes ``{prefix}metrics.csv``, ``{prefix}metrics.json``,
    ``{prefix}counts.csv`` and ``{prefix}{pr_roc,confusion,calibration}.png`` into ``out``; returns the summary
    written as JSON.
    """
    from .plots import plot_calibration, plot_confusion, plot_pr_roc

    lab = frame[frame["label"].isin(["ctc", "wbc"])]
    y = (lab["label"] == "ctc").to_numpy().astype(int)
    p = lab["p_ctc"].to_numpy(np.float64)
    calls = lab["call"].to_numpy() == "ctc"
    res = evaluate_predictions(y, p, lab["sample_id"].to_numpy(), calls=calls, n_boot=n_boot, seed=seed)
    metrics: pd.DataFrame = res["metrics"]
    atomic_write_text(out / f"{prefix}metrics.csv", metrics.to_csv(index=False))
    atomic_write_text(out / f"{prefix}counts.csv", counts.to_csv(index=False))
    count_summary = coverage_summary(counts) if "true_ctc" in counts.columns else {}
    summary = {
        "threshold": threshold,
        "n_cells": len(lab),
        "n_samples": res["n_patients"],
        "n_ctc_samples": res["n_ctc_patients"],
        "interval": res["interval"],
        "interval_note": res["note"],
        "metrics": {r.metric: {"value": r.value, "lo": r.lo, "hi": r.hi} for r in metrics.itertuples()},
        "counts": count_summary,
        **(extra or {}),
    }
    atomic_write_text(out / f"{prefix}metrics.json", json.dumps(summary, indent=2, default=float) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plot_pr_roc(y, p, out / f"{prefix}pr_roc.png", threshold=threshold)
        plot_confusion(y, calls.astype(int), out / f"{prefix}confusion.png")
        plot_calibration(y, p, out / f"{prefix}calibration.png")
    return summary
