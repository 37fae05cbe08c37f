"""CTC-class metrics with bootstrap intervals, and the decision threshold.

The positive class is the CTC (label 1). Probabilities are calibrated on validation data
(:mod:`ctcid.evaluate.calibration`); the decision threshold is chosen on those calibrated validation probabilities
(:func:`decision_threshold`: by default the score that maximises the CTC-class F1, :func:`threshold_max_f1`, or
half that best F1, :func:`threshold_half_max_f1`) and a cell is called a CTC when ``p >= threshold``.

Confidence intervals resample patients, not cells, because cells of one patient are not independent. With fewer
than :data:`MIN_PATIENTS` patients, or fewer than :data:`MIN_CTC_PATIENTS` with a CTC, most patient resamples
hold no CTC or one patient only, and the interval says nothing (an F1 of 0.905 shown as [0.000, 0.955]); then the
cells are resampled within each patient instead, which keeps the interval informative about the cells measured
but cannot see patient-to-patient variation, and the result says so (``interval`` and :func:`interval_note`).
Confusion counts (``tp``, ``fp``, ``tn``, ``fn``, ``n``, ``n_ctc``) are counts, not estimates: no interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
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
from .calibration import expected_calibration_error

__all__ = [
    "COUNT_METRICS",
    "INTERVAL_METHODS",
    "METRICS",
    "MIN_CTC_PATIENTS",
    "MIN_PATIENTS",
    "THRESHOLD_RULES",
    "bootstrap_metrics",
    "classification_metrics",
    "decision_threshold",
    "evaluate_predictions",
    "interval_note",
    "paired_difference",
    "summarise_folds",
    "threshold_half_max_f1",
    "threshold_max_f1",
    "to_markdown",
]

#: Confusion counts among :data:`METRICS`: reported without intervals.
COUNT_METRICS = ("tp", "fp", "tn", "fn", "n", "n_ctc")
_CALL_METRICS = ("f1", "precision", "recall", "specificity", "balanced_accuracy", "mcc", "accuracy")
_SCORE_METRICS = ("roc_auc", "pr_auc", "brier", "ece")
#: Names returned by :func:`classification_metrics`, in order: metrics of the calls, threshold-free ranking and
#: calibration scores, then the :data:`COUNT_METRICS`.
METRICS = (*_CALL_METRICS, *_SCORE_METRICS, *COUNT_METRICS)
#: With fewer patients, or fewer patients with a CTC, intervals resample cells within patients.
MIN_PATIENTS = 10
MIN_CTC_PATIENTS = 5
#: ``patients``: resample patients; ``cells``: resample cells within each patient; ``auto`` picks.
INTERVAL_METHODS = ("auto", "patients", "cells")


def _f1_curve(y_true: object, p: object) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Scores, and the CTC-class F1 at each distinct score used as threshold (``p >= t``) with those thresholds;
    ``None`` when ``y_true`` holds no CTC."""
    y = as_binary(y_true)
    s = as_scores(p)
    check_lengths(y_true=y, p=s)
    if not (y == 1).any():
        return None
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]  # drop the end point without a threshold (recall 0)
    denom = precision + recall
    return s, np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0), thresholds


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
    curve = _f1_curve(y_true, p)
    if curve is None:
        return 0.5
    s, f1, thresholds = curve
    best = thresholds[np.flatnonzero(f1 == f1.max()).max()]
    lower = s[s < best]
    below = lower.max() if lower.size else 0.0
    return float((best + below) / 2.0)


def threshold_half_max_f1(y_true: object, p: object) -> float:
    """Decision threshold on calibrated probabilities ``p``: half the best F1 of the CTC class on ``(y_true, p)``.

    For calibrated probabilities the threshold that maximises the expected F1 is half that maximum F1 (Lipton,
    Elkan and Naryanaswamy, "Optimal thresholding of classifiers to maximize F1 measure", ECML PKDD 2014). It
    depends on the validation cells only through the one summary F1*, where :func:`threshold_max_f1` places the
    threshold between two particular validation scores: with the 20-50 validation CTCs of a small study that
    choice is noisy and optimistic (its F1 on those cells is the maximum by construction), and transfers worse to
    new patients. Being lower, it calls more leukocytes, which makes the adjusted count noisier; so it is not the
    training default (README, *Threshold and review queue*). The result lies in [0, 0.5].

    Parameters
    ----------
    y_true
        0/1 labels (1 = CTC).
    p
        Calibrated probabilities of the CTC class.

    Returns
    -------
    float
        The threshold; 0.5 when ``y_true`` holds no CTC.

    Examples
    --------
    >>> threshold_half_max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # best F1 0.8
    0.4
    """
    curve = _f1_curve(y_true, p)
    return 0.5 if curve is None else float(curve[1].max() / 2.0)


#: How a model's decision threshold is chosen on its calibrated validation probabilities.
THRESHOLD_RULES = {"max-f1": threshold_max_f1, "half-max-f1": threshold_half_max_f1}


def decision_threshold(y_true: object, p: object, rule: str = "max-f1") -> float:
    """The threshold of ``rule`` (a key of :data:`THRESHOLD_RULES`) on labels ``y_true`` and probabilities ``p``.

    >>> round(decision_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)
    0.225
    >>> decision_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "half-max-f1")
    0.4
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}: one of {', '.join(THRESHOLD_RULES)}")
    return THRESHOLD_RULES[rule](y_true, p)


def _quiet(fn, *args, **kwargs) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kwargs))
        except ValueError:
            return float("nan")


def _calls(s: np.ndarray, threshold: float | None, calls: object | None) -> np.ndarray:
    """The CTC calls: ``calls`` when given (booleans, 0/1 or ``ctc``/``wbc``), else ``p >= threshold``."""
    if calls is None:
        if threshold is None:
            raise ValueError("give a threshold or the calls")
        return s >= threshold
    c = np.asarray(calls)
    if c.dtype.kind in "OUS":
        return c.astype(str) == "ctc"
    return c.astype(bool)


def classification_metrics(
    y_true: object, p: object, threshold: float | None = None, *, calls: object | None = None
) -> dict[str, float]:
    """CTC-class metrics of the calls ``p >= threshold``, plus threshold-free ranking and calibration scores.

    Returns ``f1``, ``precision``, ``recall`` (sensitivity), ``specificity``, ``balanced_accuracy``, ``mcc``,
    ``accuracy``, ``roc_auc``, ``pr_auc`` (average precision), ``brier``, ``ece`` (expected calibration error,
    15 equal-width bins), the counts ``tp``, ``fp``, ``tn``, ``fn``, and ``n`` (cells) and ``n_ctc`` (true CTCs),
    each computed with scikit-learn. ``calls`` replaces the threshold when the calls were made elsewhere (pooled
    out-of-fold predictions, each fold at its own threshold).

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
    pred = _calls(s, threshold, calls).astype(np.int64)
    check_lengths(y_true=y, calls=pred)
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
        "ece": expected_calibration_error(y, s),
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
    pred: np.ndarray | float,
) -> dict[str, np.ndarray]:
    """All metrics of :func:`classification_metrics` for many weightings at once.

    ``weights`` is ``[n_resamples, n_units]`` (how many times each unit, a patient or a cell, is drawn);
    ``patient`` maps each cell to a column. ``pred`` holds the calls (or is a threshold on ``s``). Threshold
    metrics come from per-unit confusion counts; ROC-AUC and average precision from weighted cumulative counts
    over the cells sorted by score (ties grouped as scikit-learn does); ECE from per-unit sums in each
    probability bin.
    """
    from .calibration import ECE_BINS

    n_pat = weights.shape[1]
    w = weights.astype(np.float64)
    pred = s >= pred if np.ndim(pred) == 0 else np.asarray(pred, bool)
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
    key = patient * ECE_BINS + np.minimum((s * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    gap = np.bincount(key, weights=y - s, minlength=n_pat * ECE_BINS).reshape(n_pat, ECE_BINS)
    ece = _div(np.abs(w @ gap).sum(axis=1), n)

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
        "ece": ece,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": n,
        "n_ctc": pos,
    }


def _interval_method(ids: np.ndarray, y: np.ndarray, method: str) -> str:
    if method not in INTERVAL_METHODS:
        raise CtcidError(f"interval method must be one of {', '.join(INTERVAL_METHODS)}, got {method!r}")
    if method != "auto":
        return method
    few = np.unique(ids).size < MIN_PATIENTS or np.unique(ids[y == 1]).size < MIN_CTC_PATIENTS
    return "cells" if few else "patients"


def interval_note(method: str, n_patients: int, n_ctc_patients: int) -> str:
    """One sentence that says how the intervals were made, and why when they are weak.

    >>> interval_note("cells", 3, 2)[:60]
    '3 patients (2 with a CTC): too few to resample patients (10 '
    """
    if method == "patients":
        return f"95% intervals resample the {n_patients} patients (percentile bootstrap)."
    return (
        f"{n_patients} patients ({n_ctc_patients} with a CTC): too few to resample patients ({MIN_PATIENTS} and "
        f"{MIN_CTC_PATIENTS} needed), so the 95% intervals resample cells within each patient; they ignore "
        "patient-to-patient variation and are optimistic."
    )


def _patient_strata(names: np.ndarray, strata: Mapping[str, object] | None) -> np.ndarray | None:
    """The stratum (an index) of each patient in ``names``, or None without strata; every patient must have one."""
    if strata is None:
        return None
    missing = [str(n) for n in names if str(n) not in strata]
    if missing:
        raise CtcidError(f"no stratum for patient(s) {', '.join(missing[:5])}")
    _, index = np.unique(np.asarray([str(strata[str(n)]) for n in names]), return_inverse=True)
    return index.astype(np.int64)


def _draw_within(rng: np.random.Generator, group: np.ndarray, n_boot: int) -> np.ndarray:
    """Indices of units drawn with replacement within their group, ``[n_boot, group.size]``: each resample draws
    as many units from each group as the group holds."""
    order = np.argsort(group, kind="stable")  # units grouped
    sizes = np.bincount(group)
    start = np.r_[0, np.cumsum(sizes)[:-1]]
    slot = group[order]  # the group each draw comes from
    return order[start[slot] + (rng.random((n_boot, group.size)) * sizes[slot]).astype(np.int64)]


def _draw_counts(draws: np.ndarray, n_units: int) -> np.ndarray:
    """How many times each unit is drawn in each resample, ``[n_boot, n_units]``."""
    n_boot = draws.shape[0]
    offsets = (draws + (np.arange(n_boot) * n_units)[:, None]).ravel()
    return np.bincount(offsets, minlength=n_boot * n_units).reshape(n_boot, n_units)


def _patient_weights(
    rng: np.random.Generator, n_pat: int, n_boot: int, pstrata: np.ndarray | None = None
) -> np.ndarray:
    """How many times each patient is drawn in each of ``n_boot`` resamples, ``[n_boot, n_pat]``. Without strata
    each resample draws ``n_pat`` patients from all of them; with ``pstrata`` (each patient's stratum) it draws as
    many from each stratum as the stratum holds, so every resample keeps the strata's sizes."""
    if pstrata is None:
        draws = rng.integers(0, n_pat, size=(n_boot, n_pat))
    else:
        draws = _draw_within(rng, pstrata, n_boot)
    return _draw_counts(draws, n_pat)


def _resample_weights(
    rng: np.random.Generator,
    patient: np.ndarray,
    n_pat: int,
    n_boot: int,
    method: str,
    pstrata: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap weights ``[n_boot, units]`` and the unit of each cell (its patient, or itself)."""
    if method == "patients":
        return _patient_weights(rng, n_pat, n_boot, pstrata), patient
    return _draw_counts(_draw_within(rng, patient, n_boot), patient.size), np.arange(patient.size)


def bootstrap_metrics(
    y_true: object,
    p: object,
    threshold: float | None,
    sample_ids: object,
    *,
    calls: object | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    interval: str = "auto",
    strata: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """Point estimates and percentile bootstrap intervals of :func:`classification_metrics`.

    With ``interval="patients"`` each resample draws as many patients as there are, with replacement; all cells
    of a drawn patient come along and a patient drawn twice counts twice. With ``"cells"`` the cells of each
    patient are resampled within it. ``"auto"`` resamples patients when there are at least :data:`MIN_PATIENTS`
    of them and :data:`MIN_CTC_PATIENTS` with a CTC, else cells. A resample in which a metric is undefined (for
    example recall when no drawn patient has a CTC) is dropped for that metric only. Confusion counts
    (:data:`COUNT_METRICS`) get no interval.

    Parameters
    ----------
    y_true, p, threshold, calls
        As for :func:`classification_metrics`.
    sample_ids
        Patient of each cell.
    n_boot
        Number of resamples; 0 gives the point estimates with missing intervals.
    seed
        Seed of the resampling.
    ci
        Coverage of the interval (0.95 gives the 2.5th and 97.5th percentiles).
    interval
        ``auto``, ``patients`` or ``cells``.
    strata
        Stratum of each patient, by sample id (for example the cohort of each patient when cohorts of fixed size
        are pooled): patients are then resampled within each stratum, every resample keeping each stratum's
        number of patients. Ignored when cells are resampled.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric``, ``value`` (on all cells), ``lo``, ``hi`` and ``interval`` (the resampling used, empty
        for counts); one row per metric in :data:`METRICS` order.

    Examples
    --------
    >>> ids = ["A", "A", "B", "B"]
    >>> df = bootstrap_metrics([0, 1, 0, 1], [0.2, 0.9, 0.1, 0.4], 0.5, ids, n_boot=200)
    >>> row = df.set_index("metric").loc["recall"]
    >>> float(row["value"]), row["interval"]
    (0.5, 'cells')
    >>> df.set_index("metric").loc["tp", ["lo", "hi"]].isna().all()
    np.True_
    """
    y = as_binary(y_true)
    s = as_scores(p)
    ids = as_sample_ids(sample_ids)
    check_lengths(y_true=y, p=s, sample_ids=ids)
    if not 0.0 < ci < 1.0:
        raise CtcidError(f"ci must be between 0 and 1, got {ci}")
    if n_boot < 0:
        raise CtcidError(f"n_boot must be 0 or more, got {n_boot}")
    pred = _calls(s, threshold, calls)
    point = classification_metrics(y, s, calls=pred)
    method = _interval_method(ids, y, interval)
    lo = dict.fromkeys(METRICS, np.nan)
    hi = dict.fromkeys(METRICS, np.nan)
    if n_boot > 0:
        names, patient = np.unique(ids, return_inverse=True)
        n_pat = int(patient.max()) + 1
        pstrata = _patient_strata(names, strata) if method == "patients" else None
        rng = np.random.default_rng(seed)
        units = n_pat if method == "patients" else y.size
        step = max(1, min(n_boot, 20_000_000 // max(1, units * 8)))
        parts = []
        for a in range(0, n_boot, step):
            weights, unit = _resample_weights(rng, patient, n_pat, min(step, n_boot - a), method, pstrata)
            parts.append(_metrics_from_weights(weights, unit, y, s, pred))
        boot = {k: np.concatenate([part[k] for part in parts]) for k in METRICS}
        q = (100 * (1 - ci) / 2, 100 * (1 + ci) / 2)
        for name in METRICS:
            vals = boot[name][np.isfinite(boot[name])]
            if vals.size and name not in COUNT_METRICS:
                lo[name], hi[name] = (float(v) for v in np.percentile(vals, q))
    return pd.DataFrame(
        {
            "metric": list(METRICS),
            "value": [point[m] for m in METRICS],
            "lo": [lo[m] for m in METRICS],
            "hi": [hi[m] for m in METRICS],
            "interval": ["" if m in COUNT_METRICS else method for m in METRICS],
        }
    )


def paired_difference(
    a: tuple[object, object, object, object],
    b: tuple[object, object, object, object],
    *,
    metrics: tuple[str, ...] = ("f1", "pr_auc"),
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    strata: Mapping[str, object] | None = None,
) -> dict[str, float]:
    """Difference ``metric(a) - metric(b)`` of two models on the same patients, with a paired bootstrap interval:
    each resample draws patients once and scores both models on them, so patient-to-patient variation that both
    share cancels. ``a`` and ``b`` are ``(y_true, p, calls, sample_ids)`` of each model's cells (the same
    patients; cells may differ in order). With ``strata`` (each patient's stratum, by sample id) patients are
    resampled within each stratum, as in :func:`bootstrap_metrics`.

    Returns ``{metric}_diff``, ``{metric}_diff_lo`` and ``{metric}_diff_hi`` for each metric, and the number of
    ``patients``.

    Examples
    --------
    >>> y, ids = [1, 0, 1, 0], ["A", "A", "B", "B"]
    >>> a = (y, [0.9, 0.1, 0.8, 0.2], [1, 0, 1, 0], ids)
    >>> b = (y, [0.9, 0.1, 0.3, 0.2], [1, 0, 0, 0], ids)
    >>> d = paired_difference(a, b, metrics=("f1",), n_boot=200)
    >>> round(d["f1_diff"], 3), d["patients"]
    (0.333, 2)
    """
    sides = []
    for y, p, calls, ids in (a, b):
        yy, ss, idx = as_binary(y), as_scores(p), as_sample_ids(ids)
        check_lengths(y_true=yy, p=ss, sample_ids=idx)
        sides.append((yy, ss, _calls(ss, None, calls), idx))
    names = np.unique(np.concatenate([sides[0][3], sides[1][3]]))
    if set(np.unique(sides[0][3])) != set(np.unique(sides[1][3])):
        raise CtcidError("a paired comparison needs both models scored on the same patients")
    rng = np.random.default_rng(seed)
    weights = _patient_weights(rng, len(names), n_boot, _patient_strata(names, strata))
    weights = np.vstack([np.ones((1, len(names)), np.int64), weights])  # row 0: every patient once
    scores = []
    for y, s, calls, idx in sides:
        patient = np.searchsorted(names, idx)
        scores.append(_metrics_from_weights(weights, patient, y, s, calls))
    q = (100 * (1 - ci) / 2, 100 * (1 + ci) / 2)
    out: dict[str, float] = {"patients": len(names)}
    for m in metrics:
        diff = scores[0][m] - scores[1][m]
        boot = diff[1:][np.isfinite(diff[1:])]
        out[f"{m}_diff"] = float(diff[0])
        lo, hi = np.percentile(boot, q) if boot.size else (np.nan, np.nan)
        out[f"{m}_diff_lo"], out[f"{m}_diff_hi"] = float(lo), float(hi)
    return out


def evaluate_predictions(
    y_true: object,
    p: object,
    sample_ids: object,
    *,
    threshold: float | None = None,
    calls: object | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    interval: str = "auto",
    strata: Mapping[str, object] | None = None,
) -> dict:
    """Metrics with intervals, and a sentence that says how the intervals were made; ``strata`` as for
    :func:`bootstrap_metrics`.

    ``p`` must be calibrated probabilities and ``threshold`` (or the ``calls``) must come from validation data;
    this function only applies them.

    Returns
    -------
    dict
        ``metrics`` (:func:`bootstrap_metrics`), ``interval`` (``patients`` or ``cells``), ``note``
        (:func:`interval_note`), ``n_patients`` and ``n_ctc_patients``.

    Examples
    --------
    >>> r = evaluate_predictions([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.6], ["A", "A", "B", "B"], threshold=0.5)
    >>> r["interval"], float(r["metrics"].set_index("metric").loc["f1", "value"])
    ('cells', 1.0)
    """
    y = as_binary(y_true)
    ids = as_sample_ids(sample_ids)
    metrics = bootstrap_metrics(
        y, p, threshold, ids, calls=calls, n_boot=n_boot, seed=seed, interval=interval, strata=strata
    )
    method = _interval_method(ids, y, interval)
    n_pat, n_ctc_pat = int(np.unique(ids).size), int(np.unique(ids[y == 1]).size)
    return {
        "metrics": metrics,
        "interval": method,
        "note": interval_note(method, n_pat, n_ctc_pat),
        "n_patients": n_pat,
        "n_ctc_patients": n_ctc_pat,
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
