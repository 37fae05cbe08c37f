"""How many CTCs a sample holds: three estimators, and 95% intervals that include what was estimated.

Counting is quantification, not classification: the count of a sample is a prevalence estimate.

``called``
    Cells called CTC at the decision threshold ("classify and count"). Biased whenever the error rates are not
    zero: every sample collects false positives in proportion to its leukocytes. No interval.
``expected``
    The sum of calibrated probabilities ("probabilistic classify and count"). If the probabilities are
    calibrated, the true count is a Poisson-binomial variable with that mean. Its interval is the 2.5% and 97.5%
    quantiles of the count's distribution, whose variance adds to the Poisson-binomial variance
    ``sum p (1 - p)`` the uncertainty of the calibration map itself, fitted on a finite validation set
    (delta method with the covariance of the Platt slope and intercept); the quantiles come from a
    skewness-corrected normal approximation of a discrete count (Volkova 1996, with continuity correction).
``adjusted``
    The called count corrected by the sensitivity ``tpr`` and false-positive rate ``fpr`` measured on the
    validation patients ("adjusted classify and count", Forman 2008): ``(called - fpr n) / (tpr - fpr)``,
    clipped to ``[0, n]`` and rounded to the nearest cell. Its interval (delta method) includes the binomial
    spread of the calls given the true count, the spread of the rates between patients and the uncertainty of
    ``tpr`` and ``fpr`` estimated from finite validation counts; its quantiles come from the same
    approximation as the expected count's, skewed by the rates' posteriors.

Interval bounds are whole numbers of cells, because the count they bracket is one.

Examples
--------
>>> import pandas as pd
>>> from ctcid.evaluate.calibration import Calibration
>>> frame = pd.DataFrame(
...     {"sample_id": ["A"] * 4, "logit": [3.0, 3.0, -3.0, -3.0], "call": ["ctc", "ctc", "wbc", "wbc"]}
... )
>>> table = count_table(frame, Calibration(), ErrorRates(tp=90, fn=10, fp=5, tn=95))
>>> table[["called_ctc", "expected_ctc", "adjusted_ctc"]].round(3).values.tolist()
[[2.0, 2.0, 2.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..config import ConfigError
from ..errors import CtcidError
from .calibration import Calibration
from .metrics import MIN_CTC_PATIENTS

__all__ = [
    "COUNT_COLUMNS",
    "COUNT_METHODS",
    "DEFAULT_COUNT_METHOD",
    "ErrorRates",
    "adjusted_count",
    "between_patient_variance",
    "count_interval",
    "count_table",
    "coverage_summary",
    "default_count_method",
    "expected_count",
    "per_patient_confusion",
]

COUNT_METHODS = ("expected", "adjusted")
#: The estimator reported as ``ctc_estimate`` unless another is asked for, when the model's error rates were
#: measured on at least :data:`~ctcid.evaluate.metrics.MIN_CTC_PATIENTS` (5) validation patients with a CTC
#: (fewer are too few for an interval everywhere in ctcid). ``ctcid bench counts``
#: (``benchmarks/results/counts_cpu-2core.json``, 128 held-out patients per preset, nine or ten validation
#: patients per fold) finds the adjusted count's coverage within [0.90, 0.98] on every preset and closest to 0.95.
#: The adjusted count's rates come from the validation patients that also chose the threshold: with the one or two
#: of a small study they are optimistic (the demo, three seeds, 39 patients: its intervals held 0.77 of the true
#: counts), so such a model reports the expected count, whose between-patient calibration offset has a prior
#: (0.92 in the same demo).
DEFAULT_COUNT_METHOD = "adjusted"
#: Columns of a count table, in order (``true_ctc`` and the per-volume columns only when known).
COUNT_COLUMNS = (
    "sample_id",
    "cells",
    "called_ctc",
    "expected_ctc",
    "expected_ctc_lo",
    "expected_ctc_hi",
    "adjusted_ctc",
    "adjusted_ctc_lo",
    "adjusted_ctc_hi",
    "ctc_estimate",
    "ctc_estimate_lo",
    "ctc_estimate_hi",
    "count_method",
)
#: Standard blood volume of a CTC count (CellSearch): counts are reported per 7.5 mL.
STANDARD_VOLUME_ML = 7.5


def _proportion(k: float, other: float) -> tuple[float, float, float]:
    """The observed proportion ``k / (k + other)`` (0.5 without trials) and the variance and third central moment
    of its Jeffreys posterior ``Beta(k + 1/2, other + 1/2)`` (the third is positive, a long upper tail, for a rate
    near 0 and negative near 1).

    >>> _proportion(9, 1)
    (0.9, 0.0098..., -0.0010...)
    """
    a, b = k + 0.5, other + 0.5
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    third = 2 * (b - a) * var / ((a + b) * (a + b + 2))
    return (k / (k + other) if k + other > 0 else 0.5), var, third


@dataclass(frozen=True)
class ErrorRates:
    """Confusion counts of the calls on the validation cells, from which ``tpr`` and ``fpr`` are estimated.

    The rates are the observed proportions (so a classifier that made no error on its validation cells counts as
    it calls); their uncertainty is that of a Beta posterior under a Jeffreys prior,
    ``Beta(k + 1/2, m - k + 1/2)``, which stays positive when a validation set with few CTCs shows no error.

    >>> r = ErrorRates(tp=9, fn=1, fp=2, tn=98)
    >>> r.tpr, r.fpr
    (0.9, 0.02)
    """

    tp: float
    fn: float
    fp: float
    tn: float
    tpr_between: float = 0.0
    fpr_between: float = 0.0
    #: Validation patients behind the counts, and how many of them hold a CTC (0: not recorded).
    patients: int = 0
    ctc_patients: int = 0

    tpr = property(lambda self: _proportion(self.tp, self.fn)[0], doc="Sensitivity: tp / (tp + fn).")
    fpr = property(lambda self: _proportion(self.fp, self.tn)[0], doc="False-positive rate: fp / (fp + tn).")
    tpr_var = property(lambda self: _proportion(self.tp, self.fn)[1], doc="Posterior variance of ``tpr``.")
    fpr_var = property(lambda self: _proportion(self.fp, self.tn)[1], doc="Posterior variance of ``fpr``.")
    tpr_third = property(lambda self: _proportion(self.tp, self.fn)[2], doc="Posterior third moment of ``tpr``.")
    fpr_third = property(lambda self: _proportion(self.fp, self.tn)[2], doc="Posterior third moment of ``fpr``.")

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> ErrorRates:
        """From a bundle's metrics: the validation confusion counts, per patient when recorded
        (``metrics["validation_patients"]``, whose spread gives the between-patient variance of each rate, see
        :func:`between_patient_variance`), else pooled (``metrics["validation"]``)."""
        per = metrics.get("validation_patients") or {}
        if per:
            tp, fn, fp, tn = (np.asarray(per[k], dtype=np.float64) for k in ("tp", "fn", "fp", "tn"))
            return cls(
                float(tp.sum()),
                float(fn.sum()),
                float(fp.sum()),
                float(tn.sum()),
                between_patient_variance(tp, tp + fn),
                between_patient_variance(fp, fp + tn),
                patients=len(tp),
                ctc_patients=int((tp + fn > 0).sum()),
            )
        try:
            pooled = metrics["validation"]
            return cls(*(float(pooled[k]) for k in ("tp", "fn", "fp", "tn")))
        except (KeyError, TypeError, ValueError):
            raise CtcidError("the model records no validation confusion counts (tp, fn, fp, tn)") from None


def per_patient_confusion(sample_ids: np.ndarray, y: np.ndarray, calls: np.ndarray) -> dict[str, list]:
    """Confusion counts of each validation patient (``sample_id``, ``tp``, ``fn``, ``fp``, ``tn``): their spread
    between patients widens the adjusted count's interval (:class:`ctcid.evaluate.ErrorRates`).

    >>> per_patient_confusion(np.array(["B", "A", "A"]), np.array([1, 1, 0]), np.array([True, False, False]))
    {'sample_id': ['A', 'B'], 'tp': [0, 1], 'fn': [1, 0], 'fp': [0, 0], 'tn': [1, 0]}
    """
    ids, patient = np.unique(np.asarray(sample_ids).astype(str), return_inverse=True)
    y, calls = np.asarray(y).astype(bool), np.asarray(calls).astype(bool)
    count = {
        "tp": y & calls,
        "fn": y & ~calls,
        "fp": ~y & calls,
        "tn": ~y & ~calls,
    }
    out: dict[str, list] = {"sample_id": ids.tolist()}
    out.update(
        {k: np.bincount(patient, weights=v, minlength=len(ids)).astype(int).tolist() for k, v in count.items()}
    )
    return out


def default_count_method(rates: ErrorRates | None) -> str:
    """The estimator reported as ``ctc_estimate`` when none is asked for: :data:`DEFAULT_COUNT_METHOD` when the
    error rates come from at least :data:`~ctcid.evaluate.metrics.MIN_CTC_PATIENTS` validation patients with a
    CTC, else ``expected``.

    >>> default_count_method(ErrorRates(tp=40, fn=2, fp=3, tn=300, patients=10, ctc_patients=7))
    'adjusted'
    >>> default_count_method(ErrorRates(tp=32, fn=0, fp=0, tn=268, patients=2, ctc_patients=1))
    'expected'
    """
    if DEFAULT_COUNT_METHOD == "adjusted" and (rates is None or rates.ctc_patients < MIN_CTC_PATIENTS):
        return "expected"
    return DEFAULT_COUNT_METHOD


def between_patient_variance(k: np.ndarray, m: np.ndarray) -> float:
    """DerSimonian-Laird estimate of the variance of a rate between patients, beyond binomial sampling: patients
    with ``k`` events in ``m`` trials each. 0 with fewer than three patients who have trials.

    >>> between_patient_variance(np.array([9, 1, 5]), np.array([10, 10, 10])) > 0.1
    True
    >>> between_patient_variance(np.array([5, 5, 5]), np.array([10, 10, 10]))
    0.0
    """
    use = m > 0
    k, m = k[use], m[use]
    if len(k) < 3:
        return 0.0
    pooled = float(k.sum() / m.sum())
    p = k / m
    w = m / max(pooled * (1 - pooled), 1e-6)  # inverse of the binomial variance at the pooled rate
    mean = float((w * p).sum() / w.sum())
    q = float((w * (p - mean) ** 2).sum())
    denom = float(w.sum() - (w * w).sum() / w.sum())
    return max(0.0, (q - (len(k) - 1)) / denom) if denom > 0 else 0.0


def count_interval(
    mean: np.ndarray, var: np.ndarray, skew_num: np.ndarray, n: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-number quantiles ``(lo, hi)`` of counts with the given mean, variance and third central moment.

    The distribution function of a count is approximated by ``G((k + 0.5 - mean) / sd)`` with
    ``G(x) = Phi(x) + gamma (1 - x^2) phi(x) / 6`` and ``gamma = skew_num / sd^3`` (refined normal
    approximation of the Poisson-binomial law, Volkova 1996); ``lo`` is the smallest ``k`` with
    ``G >= (1 - level) / 2`` and ``hi`` the smallest with ``G >= (1 + level) / 2``, both within ``[0, n]``.

    >>> lo, hi = count_interval(np.array([10.0]), np.array([9.0]), np.array([0.0]), np.array([100]))
    >>> int(lo[0]), int(hi[0])
    (4, 16)
    """
    mean, var, skew_num = (np.asarray(a, dtype=np.float64) for a in (mean, var, skew_num))
    n = np.asarray(n, dtype=np.float64)
    sd = np.sqrt(np.maximum(var, 1e-12))
    gamma = np.clip(skew_num / sd**3, -2.0, 2.0)
    span = np.ceil(6 * sd + 3)
    width = int(max(1.0, float(np.max(2 * span + 1)))) if mean.size else 1
    start = np.maximum(np.floor(mean - span), 0.0)
    k = start[:, None] + np.arange(width)[None, :]
    x = (k + 0.5 - mean[:, None]) / sd[:, None]
    cdf = norm.cdf(x) + gamma[:, None] * (1 - x * x) * norm.pdf(x) / 6.0
    cdf = np.maximum.accumulate(np.clip(cdf, 0.0, 1.0), axis=1)
    tails = ((1 - level) / 2, (1 + level) / 2)
    out = []
    for q in tails:
        first = np.argmax(cdf >= q, axis=1)
        none = ~(cdf >= q).any(axis=1)
        out.append(np.minimum(np.where(none, n, k[np.arange(k.shape[0]), first]), n))
    return out[0], out[1]


def expected_count(
    raw_logits: np.ndarray, groups: np.ndarray, n_groups: int, calibration: Calibration
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: the sum of calibrated probabilities, its variance (Poisson-binomial plus calibration) and the
    Poisson-binomial third central moment."""
    z = calibration.shifted(raw_logits)
    p = calibration.probabilities(raw_logits)
    w = p * (1 - p)
    mean = np.bincount(groups, weights=p, minlength=n_groups)
    var = np.bincount(groups, weights=w, minlength=n_groups)
    third = np.bincount(groups, weights=w * (1 - 2 * p), minlength=n_groups)
    cov = calibration.covariance()
    if cov.any():
        # d(sum p)/d(slope) = sum p(1-p) z, d(sum p)/d(intercept) = sum p(1-p)
        g = np.stack(
            [
                np.bincount(groups, weights=w * z, minlength=n_groups),
                np.bincount(groups, weights=w, minlength=n_groups),
            ],
            axis=1,
        )
        var = var + np.einsum("gi,ij,gj->g", g, cov, g)
    if calibration.between > 0:  # a patient's own offset from the map: d(sum p)/d(offset) = sum p(1-p)
        v = np.bincount(groups, weights=w, minlength=n_groups)
        var = var + calibration.between * v**2
    return mean, var, third


def adjusted_count(
    called: np.ndarray, n: np.ndarray, rates: ErrorRates, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjusted classify-and-count estimate in whole cells, with a delta-method interval in whole cells.

    The corrected count ``(called - fpr n) / (tpr - fpr)`` is the mean of the true count's approximate
    distribution; the estimate is the correction rounded to the nearest cell. A count is a number of cells, and a
    correction of a fraction of a cell (a false-positive rate of 0.3% over 60 leukocytes) would otherwise move
    every exact call off the truth. The interval holds the whole-number quantiles of the count's distribution
    around the unrounded correction, found as for the expected count (:func:`count_interval`: a normal
    approximation with the continuity correction and a skewness term, the skew coming from the calls' binomial
    spread and from the rates' posteriors). Rounding normal quantiles outward instead would add up to a cell on
    each side: with nearly exact calls it covers almost every patient whatever the level.

    NaN where the validation calls do not separate the classes (``tpr - fpr < 0.05``).

    >>> est, lo, hi = adjusted_count(np.array([12.0]), np.array([100.0]), ErrorRates(tp=90, fn=10, fp=5, tn=95))
    >>> float(est[0]), float(lo[0]), float(hi[0])  # the correction is 8.24
    (8.0, 1.0, 15.0)
    """
    called = np.asarray(called, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    t, f = rates.tpr, rates.fpr
    gap = t - f
    if gap < 0.05:
        nan = np.full(called.shape, np.nan)
        return nan, nan.copy(), nan.copy()
    est = np.clip((called - f * n) / gap, 0.0, n)
    neg = n - est
    # the calls of a patient: binomial given its rates, which vary between patients (beta-binomial spread)
    var_calls = est * t * (1 - t) + neg * f * (1 - f)
    var_calls += (
        est * np.maximum(est - 1, 0) * rates.tpr_between + neg * np.maximum(neg - 1, 0) * rates.fpr_between
    )
    var = (var_calls + neg**2 * rates.fpr_var + est**2 * rates.tpr_var) / gap**2
    # Skew of the true count: a rate estimated from few errors may be several times larger than seen (a long
    # upper tail of the false-positive rate is a long lower tail of the count), and chance false positives
    # skew the calls upwards.
    third_calls = est * t * (1 - t) * (1 - 2 * t) + neg * f * (1 - f) * (1 - 2 * f)
    third = -(third_calls + neg**3 * rates.fpr_third + est**3 * rates.tpr_third) / gap**3
    lo, hi = count_interval(est, var, third, n, level)
    return np.round(est), lo, hi


def count_table(
    frame: pd.DataFrame,
    calibration: Calibration,
    rates: ErrorRates | None,
    *,
    method: str | None = None,
    blood_volume_ml: float | pd.Series | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per-sample CTC counts by every estimator, from per-cell predictions.

    Parameters
    ----------
    frame
        Per-cell predictions with ``sample_id``, ``logit`` (the model's raw logit) and ``call`` (``ctc``/``wbc``);
        ``label`` (``ctc``/``wbc``/empty) adds ``true_ctc``; a ``blood_volume_ml`` column gives each sample's
        blood volume.
    calibration
        The bundle's calibration (it turned the logits into ``p_ctc``).
    rates
        The bundle's validation error rates (``None``: no adjusted estimate).
    method
        The estimator reported as ``ctc_estimate``: ``expected`` or ``adjusted`` (default:
        :func:`default_count_method` of ``rates``).
    blood_volume_ml
        Blood volume of every sample (a number, or a Series indexed by ``sample_id``); adds ``blood_volume_ml``
        and ``ctc_per_7_5ml`` (with ``_lo``/``_hi``), the estimate per 7.5 mL.
    level
        Coverage of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per sample (sorted), columns :data:`COUNT_COLUMNS`, then ``true_ctc`` when labels exist.
    """
    if method is None:
        method = default_count_method(rates)
    if method not in COUNT_METHODS:
        raise ConfigError("method", f"must be one of {', '.join(COUNT_METHODS)}, got {method!r}", "--count-method")
    if not 0.0 < level < 1.0:
        raise CtcidError(f"the interval level must be between 0 and 1, got {level}")
    if method == "adjusted" and rates is None:
        raise CtcidError("the adjusted count needs the model's validation error rates, which it does not record")
    samples, groups = np.unique(frame["sample_id"].astype(str).to_numpy(), return_inverse=True)
    g = len(samples)
    cells = np.bincount(groups, minlength=g).astype(np.float64)
    called = np.bincount(groups, weights=(frame["call"].to_numpy() == "ctc"), minlength=g)
    mean, var, third = expected_count(frame["logit"].to_numpy(np.float64), groups, g, calibration)
    e_lo, e_hi = count_interval(mean, var, third, cells, level)
    if rates is not None:
        a_est, a_lo, a_hi = adjusted_count(called, cells, rates, level)
    else:
        a_est = a_lo = a_hi = np.full(g, np.nan)
    table = pd.DataFrame(
        {
            "sample_id": samples,
            "cells": cells.astype(np.int64),
            "called_ctc": called.astype(np.int64),
            "expected_ctc": mean,
            "expected_ctc_lo": e_lo,
            "expected_ctc_hi": e_hi,
            "adjusted_ctc": a_est,
            "adjusted_ctc_lo": a_lo,
            "adjusted_ctc_hi": a_hi,
        }
    )
    for suffix in ("", "_lo", "_hi"):
        table[f"ctc_estimate{suffix}"] = table[f"{method}_ctc{suffix}"]
    table["count_method"] = method
    if "label" in frame.columns:
        lab = frame["label"].fillna("").astype(str).to_numpy()
        known = np.bincount(groups, weights=np.isin(lab, ("ctc", "wbc")), minlength=g)
        true = np.bincount(groups, weights=lab == "ctc", minlength=g)
        if known.any():
            table["true_ctc"] = np.where(known == cells, true, np.nan)
            if (known == cells).all():
                table["true_ctc"] = table["true_ctc"].astype(np.int64)
    volume = _volumes(frame, samples, blood_volume_ml)
    if volume is not None:
        table["blood_volume_ml"] = volume
        for suffix in ("", "_lo", "_hi"):
            table[f"ctc_per_7_5ml{suffix}"] = table[f"ctc_estimate{suffix}"] * STANDARD_VOLUME_ML / volume
    return table


def _volumes(frame: pd.DataFrame, samples: np.ndarray, given: float | pd.Series | None) -> np.ndarray | None:
    if given is None and "blood_volume_ml" in frame.columns:
        per = frame.groupby(frame["sample_id"].astype(str))["blood_volume_ml"].agg(["min", "max"])
        if not np.allclose(per["min"], per["max"], equal_nan=True):
            bad = per.index[~np.isclose(per["min"], per["max"])][0]
            raise CtcidError(f"sample {bad} has cells with different blood volumes")
        given = per["min"]
    if given is None:
        return None
    if isinstance(given, pd.Series):
        given.index = given.index.astype(str)
        missing = [s for s in samples if s not in given.index]
        if missing:
            raise CtcidError(f"no blood volume for sample(s) {', '.join(missing[:5])}")
        vol = given.loc[samples].to_numpy(np.float64)
    else:
        vol = np.full(len(samples), float(given))
    if not (np.isfinite(vol) & (vol > 0)).all():
        raise CtcidError("blood volumes must be positive numbers of millilitres")
    return vol


def coverage_summary(table: pd.DataFrame) -> dict[str, float]:
    """MAE, bias, interval coverage and mean width of each estimator against ``true_ctc`` (over samples), and of
    ``ctc_estimate`` (as ``estimate_*``; each row's ``count_method``) when the table has it.

    >>> t = pd.DataFrame({"true_ctc": [2, 0], "called_ctc": [3, 1], "expected_ctc": [2.0, 0.5],
    ...     "expected_ctc_lo": [0, 0], "expected_ctc_hi": [4, 2], "adjusted_ctc": [2.5, 0.0],
    ...     "adjusted_ctc_lo": [1, 0], "adjusted_ctc_hi": [2, 1]})
    >>> s = coverage_summary(t)
    >>> s["called_mae"], s["expected_coverage"], s["adjusted_coverage"], s["adjusted_width"]
    (1.0, 1.0, 1.0, 1.0)
    """
    truth = table["true_ctc"].to_numpy(np.float64)
    out: dict[str, float] = {"patients": float(np.isfinite(truth).sum())}
    ok = np.isfinite(truth)
    columns = {name: f"{name}_ctc" for name in ("called", *COUNT_METHODS)}
    if "ctc_estimate" in table.columns:
        columns["estimate"] = "ctc_estimate"
    for name, column in columns.items():
        est = table[column].to_numpy(np.float64)
        good = ok & np.isfinite(est)
        err = est[good] - truth[good]
        out[f"{name}_patients"] = float(good.sum())  # those this estimator could count
        out[f"{name}_mae"] = float(np.abs(err).mean()) if err.size else math.nan
        out[f"{name}_bias"] = float(err.mean()) if err.size else math.nan
        if name == "called":
            continue
        lo = table[f"{column}_lo"].to_numpy(np.float64)[good]
        hi = table[f"{column}_hi"].to_numpy(np.float64)[good]
        inside = (lo <= truth[good]) & (truth[good] <= hi)
        out[f"{name}_coverage"] = float(inside.mean()) if inside.size else math.nan
        out[f"{name}_width"] = float((hi - lo).mean()) if inside.size else math.nan
    return out
