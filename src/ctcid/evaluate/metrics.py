"""CTC-class metrics, calibration, patient-level bootstrap intervals and per-patient count errors.

The positive class is the CTC (label 1). Probabilities are ``p = sigmoid(logit / T)`` with a temperature ``T``
fitted on validation data (:func:`fit_temperature`); the decision threshold is chosen on validation data to
maximise the CTC-class F1 (:func:`threshold_max_f1`) and a cell is called a CTC when ``p >= threshold``.
Confidence intervals resample patients, not cells, because cells of one patient are not independent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ..errors import CtcidError
from ._checks import as_binary, as_sample_ids, as_scores, check_lengths

__all__ = [
    "METRICS",
    "apply_temperature",
    "bootstrap_metrics",
    "classification_metrics",
    "count_errors",
    "evaluate_predictions",
    "fit_temperature",
    "summarise_folds",
    "threshold_max_f1",
    "to_markdown",
]

#: Names returned by :func:`classification_metrics`, in order.
METRICS = (
    "f1",
    "precision",
    "recall",
    "specificity",
    "balanced_accuracy",
    "mcc",
    "accuracy",
    "roc_auc",
    "pr_auc",
    "brier",
    "tp",
    "fp",
    "tn",
    "fn",
    "n",
    "n_ctc",
)

T_BOUNDS = (0.05, 20.0)


def threshold_max_f1(y_true: object, p: object) -> float:
    """Decision threshold on ``p`` that maximises the F1 score of the CTC class.

    Candidate thresholds are the distinct scores (``sklearn.metrics.precision_recall_curve``); among equally good
    ones the highest is kept. The returned value is the midpoint between the best score and the next lower
    distinct score (0 when there is none), so that calls at ``p >= threshold`` are the same as at the best score
    while small shifts of the scores do not flip them.

    Parameters
    ----------
    y_true
        0/1 labels (1 = CTC).
    p
        Probabilities of the CTC class.

    Returns
    -------
    float
        The threshold; 0.5 when ``y_true`` holds no CTC.

    Examples
    --------
    >>> round(threshold_max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)  # best 0.35 (F1 0.8), next lower 0.1
    0.225
    """
    y = as_binary(y_true)
    s = as_scores(p)
    check_lengths(y_true=y, p=s)
    if not (y == 1).any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = thresholds[np.flatnonzero(f1 == f1.max()).max()]
    lower = s[s < best]
    below = lower.max() if lower.size else 0.0
    return float((best + below) / 2.0)


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logits / t
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: object, y_true: object) -> float:
    """Temperature ``T`` minimising the binary negative log-likelihood of ``sigmoid(logits / T)``.

    The search runs over ``log T`` (``scipy.optimize.minimize_scalar``, bounded to ``T`` in [0.05, 20]).

    Returns
    -------
    float
        ``T > 0``; 1.0 when ``y_true`` holds a single class (nothing to calibrate against).

    Examples
    --------
    >>> fit_temperature([2.0, -2.0], [1, 1])
    1.0
    """
    z = as_scores(logits, "logits", probability=False)
    y = as_binary(y_true).astype(np.float64)
    check_lengths(logits=z, y_true=y)
    if np.unique(y).size < 2:
        return 1.0
    lo, hi = math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])
    res = minimize_scalar(lambda u: _nll(z, y, math.exp(u)), bounds=(lo, hi), method="bounded")
    return float(math.exp(res.x))


def apply_temperature(logits: object, T: float = 1.0) -> np.ndarray:
    """CTC probabilities ``sigmoid(logits / T)``, numerically stable for large logits.

    Examples
    --------
    >>> apply_temperature([0.0, 2.0, -1000.0], T=2.0).round(4).tolist()
    [0.5, 0.7311, 0.0]
    """
    if not (math.isfinite(T) and T > 0):
        raise CtcidError(f"temperature must be a positive number, got {T}")
    z = as_scores(logits, "logits", probability=False)
    return expit(z / float(T))


def _quiet(fn, *args, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kwargs))
        except ValueError:
            return float("nan")


def classification_metrics(y_true: object, p: object, threshold: float) -> dict[str, float]:
    """CTC-class metrics of the calls ``p >= threshold``, plus threshold-free ranking and calibration scores.

    Returns ``f1``, ``precision``, ``recall`` (sensitivity), ``specificity``, ``balanced_accuracy``, ``mcc``,
    ``accuracy``, ``roc_auc``, ``pr_auc`` (average precision), ``brier``, the counts ``tp``, ``fp``, ``tn``,
    ``fn``, and ``n`` (cells) and ``n_ctc`` (true CTCs), each computed with scikit-learn.

    Undefined values are NaN, never an exception: ``recall`` without true CTCs, ``specificity`` without true
    WBCs, ``balanced_accuracy``, ``mcc`` and ``roc_auc`` unless both classes are present, ``pr_auc`` without
    true CTCs, and ``f1`` when there is neither a true nor a called CTC. ``precision`` is 0 when no cell is
    called a CTC (``zero_division=0``); ``mcc`` is 0 when all calls are one class (scikit-learn's convention).

    Examples
    --------
    >>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.2], threshold=0.5)
    >>> m["tp"], m["fp"], m["recall"], m["specificity"]
    (1.0, 1.0, 0.5, 0.5)
    """
    y = as_binary(y_true)
    s = as_scores(p)
    n = check_lengths(y_true=y, p=s)
    if n == 0:
        raise CtcidError("no cells to evaluate")
    pred = (s >= threshold).astype(np.int64)
    tn, fp, fn, tp = (float(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    has_pos, has_neg = tp + fn > 0, tn + fp > 0
    both = has_pos and has_neg
    nan = float("nan")
    return {
        "f1": float(f1_score(y, pred, zero_division=np.nan)) if tp + fp + fn > 0 else nan,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=np.nan)) if has_pos else nan,
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)) if has_neg else nan,
        "balanced_accuracy": _quiet(balanced_accuracy_score, y, pred) if both else nan,
        "mcc": _quiet(matthews_corrcoef, y, pred) if both else nan,
        "accuracy": float(accuracy_score(y, pred)),
        "roc_auc": _quiet(roc_auc_score, y, s) if both else nan,
        "pr_auc": _quiet(average_precision_score, y, s) if has_pos else nan,
        "brier": float(brier_score_loss(y, s, pos_label=1)),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": float(n),
        "n_ctc": tp + fn,
    }


def _div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _metrics_from_weights(
    weights: np.ndarray,
    patient: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    threshold: float,
) -> dict[str, np.ndarray]:
    """All metrics of :func:`classification_metrics` for many patient weightings at once.

    ``weights`` is ``[n_resamples, n_patients]`` (how many times each patient is drawn); ``patient`` maps each
    cell to a column. Threshold metrics come from per-patient confusion counts; ROC-AUC and average precision
    from weighted cumulative counts over the cells sorted by score (ties grouped as scikit-learn does).
    """
    n_pat = weights.shape[1]
    w = weights.astype(np.float64)
    pred = s >= threshold
    per = {
        "tp": np.bincount(patient, weights=(y == 1) & pred, minlength=n_pat),
        "fp": np.bincount(patient, weights=(y == 0) & pred, minlength=n_pat),
        "tn": np.bincount(patient, weights=(y == 0) & ~pred, minlength=n_pat),
        "fn": np.bincount(patient, weights=(y == 1) & ~pred, minlength=n_pat),
        "sq": np.bincount(patient, weights=(s - y) ** 2, minlength=n_pat),
    }
    tp, fp, tn, fn, sq = (w @ per[k] for k in ("tp", "fp", "tn", "fn", "sq"))
    n = tp + fp + tn + fn
    pos, neg = tp + fn, tn + fp
    both = (pos > 0) & (neg > 0)
    recall = _div(tp, pos)
    spec = _div(tn, neg)
    mcc_den = np.sqrt((tp + fp) * pos * neg * (tn + fn))
    mcc = np.where(both, _div(tp * tn - fp * fn, mcc_den, fill=0.0), np.nan)

    # Ranking metrics: cells sorted by decreasing score, cumulative weighted counts at the end of each tie block.
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted, pat_sorted = s[order], y[order].astype(np.float64), patient[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    auc = np.empty(w.shape[0])
    ap = np.empty(w.shape[0])
    chunk = max(1, 4_000_000 // max(1, s.size))
    for a in range(0, w.shape[0], chunk):
        cw = w[a : a + chunk][:, pat_sorted]
        ctp = np.cumsum(cw * y_sorted, axis=1)[:, ends]
        cfp = np.cumsum(cw * (1.0 - y_sorted), axis=1)[:, ends]
        tot_p, tot_n = ctp[:, -1:], cfp[:, -1:]
        tpr = np.hstack([np.zeros((ctp.shape[0], 1)), _div(ctp, tot_p)])
        fpr = np.hstack([np.zeros((cfp.shape[0], 1)), _div(cfp, tot_n)])
        auc[a : a + chunk] = np.trapezoid(tpr, fpr, axis=1)
        prec = _div(ctp, ctp + cfp, fill=1.0)
        ap[a : a + chunk] = np.sum(np.diff(tpr, axis=1) * prec, axis=1)
    return {
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "precision": _div(tp, tp + fp, fill=0.0),
        "recall": recall,
        "specificity": spec,
        "balanced_accuracy": np.where(both, (recall + spec) / 2, np.nan),
        "mcc": mcc,
        "accuracy": _div(tp + tn, n),
        "roc_auc": np.where(both, auc, np.nan),
        "pr_auc": np.where(pos > 0, ap, np.nan),
        "brier": _div(sq, n),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": n,
        "n_ctc": pos,
    }


def bootstrap_metrics(
    y_true: object,
    p: object,
    threshold: float,
    sample_ids: object,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Point estimates and patient-level percentile bootstrap intervals of :func:`classification_metrics`.

    Each resample draws as many patients as there are, with replacement; all cells of a drawn patient come
    along and a patient drawn twice counts twice. A resample in which a metric is undefined (for example recall
    when no drawn patient has a CTC) is dropped for that metric only.

    Parameters
    ----------
    y_true, p, threshold
        As for :func:`classification_metrics`.
    sample_ids
        Patient of each cell.
    n_boot
        Number of resamples; 0 gives the point estimates with missing intervals.
    seed
        Seed of the resampling.
    ci
        Coverage of the interval (0.95 gives the 2.5th and 97.5th percentiles).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric``, ``value`` (on all cells), ``lo``, ``hi``; one row per metric in :data:`METRICS` order.

    Examples
    --------
    >>> df = bootstrap_metrics([0, 1, 0, 1], [0.2, 0.9, 0.1, 0.4], 0.5, ["A", "A", "B", "B"], n_boot=200)
    >>> df.set_index("metric").loc["n", ["value", "lo", "hi"]].tolist()
    [4.0, 4.0, 4.0]
    """
    y = as_binary(y_true)
    s = as_scores(p)
    ids = as_sample_ids(sample_ids)
    check_lengths(y_true=y, p=s, sample_ids=ids)
    if not 0.0 < ci < 1.0:
        raise CtcidError(f"ci must be between 0 and 1, got {ci}")
    if n_boot < 0:
        raise CtcidError(f"n_boot must be 0 or more, got {n_boot}")
    point = classification_metrics(y, s, threshold)
    lo = dict.fromkeys(METRICS, np.nan)
    hi = dict.fromkeys(METRICS, np.nan)
    if n_boot > 0:
        _, patient = np.unique(ids, return_inverse=True)
        n_pat = int(patient.max()) + 1
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n_pat, size=(n_boot, n_pat))
        offsets = (draws + (np.arange(n_boot) * n_pat)[:, None]).ravel()
        weights = np.bincount(offsets, minlength=n_boot * n_pat).reshape(n_boot, n_pat)
        boot = _metrics_from_weights(weights, patient, y, s, threshold)
        q = (100 * (1 - ci) / 2, 100 * (1 + ci) / 2)
        for name in METRICS:
            vals = boot[name][np.isfinite(boot[name])]
            if vals.size:
                lo[name], hi[name] = (float(v) for v in np.percentile(vals, q))
    return pd.DataFrame(
        {
            "metric": list(METRICS),
            "value": [point[m] for m in METRICS],
            "lo": [lo[m] for m in METRICS],
            "hi": [hi[m] for m in METRICS],
        }
    )


def count_errors(
    y_true: object, y_pred: object, sample_ids: object, p: object | None = None
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-patient CTC counts, called versus true, and how well the counts agree across patients.

    Parameters
    ----------
    y_true, y_pred
        True and called classes (0/1 or booleans).
    sample_ids
        Patient of each cell.
    p
        Optional CTC probabilities; their sum per patient is the expected count.

    Returns
    -------
    table : pandas.DataFrame
        One row per patient (sorted by ``sample_id``): ``sample_id``, ``cells``, ``true_ctc``, ``pred_ctc``,
        ``expected_ctc`` (NaN without ``p``), ``error`` (``pred_ctc - true_ctc``).
    summary : dict
        ``count_mae`` (mean absolute count error per patient), ``count_bias`` (mean signed error),
        ``count_spearman`` (rank correlation of called and true counts over patients; NaN when either is
        constant), ``expected_count_mae`` (NaN without ``p``).

    Examples
    --------
    >>> t, s = count_errors([1, 1, 0, 0], [1, 0, 1, 1], ["A", "A", "B", "B"])
    >>> t["error"].tolist(), s["count_mae"], s["count_bias"]
    ([-1, 2], 1.5, 0.5)
    """
    y = as_binary(y_true)
    yp = as_binary(y_pred, "y_pred")
    ids = as_sample_ids(sample_ids)
    s = None if p is None else as_scores(p)
    check_lengths(y_true=y, y_pred=yp, sample_ids=ids, p=s)
    frame = pd.DataFrame({"sample_id": ids, "true_ctc": y, "pred_ctc": yp})
    frame["expected_ctc"] = np.nan if s is None else s
    g = frame.groupby("sample_id", sort=True)
    table = pd.DataFrame(
        {
            "sample_id": g.size().index.astype(str),
            "cells": g.size().to_numpy(np.int64),
            "true_ctc": g["true_ctc"].sum().to_numpy(np.int64),
            "pred_ctc": g["pred_ctc"].sum().to_numpy(np.int64),
            "expected_ctc": g["expected_ctc"].sum(min_count=1).to_numpy(np.float64),
        }
    )
    table["error"] = table["pred_ctc"] - table["true_ctc"]
    err = table["error"].to_numpy(np.float64)
    true_c, pred_c = table["true_ctc"].to_numpy(), table["pred_ctc"].to_numpy()
    if len(table) >= 2 and np.ptp(true_c) > 0 and np.ptp(pred_c) > 0:
        rho = float(spearmanr(true_c, pred_c).statistic)
    else:
        rho = float("nan")
    nan = float("nan")
    summary = {
        "count_mae": float(np.abs(err).mean()) if err.size else nan,
        "count_bias": float(err.mean()) if err.size else nan,
        "count_spearman": rho,
        "expected_count_mae": (
            float(np.abs(table["expected_ctc"] - table["true_ctc"]).mean()) if s is not None and err.size else nan
        ),
    }
    return table, summary


def evaluate_predictions(
    y_true: object,
    logits: object,
    sample_ids: object,
    *,
    threshold: float,
    temperature: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Calibrate logits, call CTCs and compute every evaluation of this module in one go.

    ``threshold`` and ``temperature`` must come from validation data; this function only applies them.

    Returns
    -------
    dict
        ``metrics`` (:func:`bootstrap_metrics`), ``counts`` and ``count_summary`` (:func:`count_errors`, with the
        expected counts from the calibrated probabilities), ``threshold`` and ``temperature``.

    Examples
    --------
    >>> r = evaluate_predictions([0, 1, 0, 1], [-2.0, 3.0, -1.0, 0.5], ["A", "A", "B", "B"], threshold=0.5)
    >>> r["count_summary"]["count_mae"], sorted(r)
    (0.0, ['count_summary', 'counts', 'metrics', 'temperature', 'threshold'])
    """
    y = as_binary(y_true)
    p = apply_temperature(logits, temperature)
    ids = as_sample_ids(sample_ids)
    check_lengths(y_true=y, logits=p, sample_ids=ids)
    metrics = bootstrap_metrics(y, p, threshold, ids, n_boot=n_boot, seed=seed)
    counts, summary = count_errors(y, (p >= threshold).astype(np.int64), ids, p)
    return {
        "metrics": metrics,
        "counts": counts,
        "count_summary": summary,
        "threshold": float(threshold),
        "temperature": float(temperature),
    }


def summarise_folds(per_fold: list[Mapping[str, float]]) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1), minimum and maximum of each metric over cross-validation folds.

    Non-numeric entries and a ``fold`` key are ignored; NaN values (a metric undefined in a fold) are skipped
    and ``n`` counts the folds where the metric is defined.

    Examples
    --------
    >>> summarise_folds([{"f1": 0.5}, {"f1": 0.7}]).round(3).to_dict("records")
    [{'metric': 'f1', 'mean': 0.6, 'std': 0.141, 'min': 0.5, 'max': 0.7, 'n': 2}]
    """
    names: list[str] = []
    for row in per_fold:
        for k, v in row.items():
            if (
                k != "fold"
                and k not in names
                and isinstance(v, int | float | np.number)
                and not isinstance(v, bool)
            ):
                names.append(k)
    frame = pd.DataFrame([{k: row.get(k, np.nan) for k in names} for row in per_fold], columns=names, dtype=float)
    out = pd.DataFrame(
        {
            "metric": names,
            "mean": frame.mean().to_numpy(),
            "std": frame.std(ddof=1).to_numpy(),
            "min": frame.min().to_numpy(),
            "max": frame.max().to_numpy(),
            "n": frame.notna().sum().to_numpy(np.int64),
        }
    )
    return out


def _cell(value: object, floatfmt: str) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else format(float(value), floatfmt)
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f", *, index: bool = False) -> str:
    """Render a DataFrame as a GitHub Markdown (pipe) table.

    Floats use ``floatfmt``, missing values are empty, numeric columns are right-aligned and others left-aligned,
    ``|`` in text is escaped. With ``index=True`` the index comes first.

    Examples
    --------
    >>> print(to_markdown(pd.DataFrame({"model": ["resnet50", "gbm"], "f1": [0.8, float("nan")]})))
    | model    |    f1 |
    |:---------|------:|
    | resnet50 | 0.800 |
    | gbm      |       |
    """
    if index:
        df = df.reset_index()
    headers = [str(c).replace("|", "\\|") for c in df.columns]
    if not headers:
        return ""
    right = [
        pd.api.types.is_numeric_dtype(df[c].dtype) and not pd.api.types.is_bool_dtype(df[c].dtype)
        for c in df.columns
    ]
    rows = [[_cell(v, floatfmt) for v in row] for row in df.itertuples(index=False, name=None)]
    widths = [max([len(h), 3, *(len(r[j]) for r in rows)]) for j, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(parts) + " |"

    dashes = [("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for w, r in zip(widths, right, strict=True)]
    rule = "|" + "|".join(dashes) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
