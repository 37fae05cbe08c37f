"""Calibrated CTC probabilities: a prior-shift correction, then Platt scaling (or isotonic regression), fitted on
validation patients only, with the uncertainty of the fit.

Why two steps. A class-weighted loss (``weighted_bce`` with positive weight ``w``, focal loss, a balanced sampler,
or gradient boosting with balanced class weights) trains the network as if CTCs were ``w`` times more common than
they are, so its logit estimates ``log(w) + logit(P(CTC | cell))``: every logit is shifted by ``log w``. A
temperature (one divisor, no intercept) cannot remove a shift. The first step subtracts the known shift
(``prior_shift = log w``, recorded by training); the second fits ``p = sigmoid(slope * z + intercept)`` on the
validation cells (Platt 1999) to correct what remains (typically over-confidence on new patients).

The Platt map is fitted by Firth's bias-reduced logistic regression (Firth 1993; the penalty is the Jeffreys
prior, half the log-determinant of the Fisher information), which stays finite when a small validation set
separates the classes perfectly and reduces the small-sample bias of the slope, without assuming anything about
the scale of the logits (an undertrained network's logits can span a tenth of a unit); the inverse Fisher
information at the optimum is the covariance of ``(slope, intercept)``, which the count intervals of
:mod:`ctcid.evaluate.counts` carry.

``method="isotonic"`` fits a monotone step function instead (scikit-learn's ``IsotonicRegression``), exported as
plain arrays; it has no parametric covariance. ``method="temperature"`` reads bundles written before calibration
had an intercept (``p = sigmoid(z / T)``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> z_true = rng.normal(-2.0, 2.0, 20000)                  # calibrated logits of cells
>>> y = (rng.random(20000) < 1 / (1 + np.exp(-z_true))).astype(int)
>>> raw = z_true + np.log(9.0)                             # what a loss with positive weight 9 outputs
>>> cal = fit_calibration(raw, y, prior_shift=np.log(9.0))
>>> round(cal.slope, 1), round(cal.intercept, 1)
(1.0, -0.0)
>>> float(np.abs(cal.probabilities(raw) - 1 / (1 + np.exp(-z_true))).max()) < 0.02
True
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from ..errors import CtcidError
from ..models.calibration import Calibration, logit
from ._checks import as_binary, as_scores, check_lengths

__all__ = [
    "DEFAULT_BETWEEN",
    "ECE_BINS",
    "PRIOR_PATIENTS",
    "SLOPE_BOUNDS",
    "Calibration",
    "between_patient_offset",
    "expected_calibration_error",
    "fit_calibration",
    "logit",
]

#: Between-patient variance of a calibration offset (logit units) assumed before any patient is measured: the
#: median of what ``ctcid bench counts`` measured on ``medium`` validation sets of 9 patients (0.45, 1.52, 2.74).
DEFAULT_BETWEEN = 1.5
#: Weight of :data:`DEFAULT_BETWEEN`, in patients, against the validation patients' own estimate.
PRIOR_PATIENTS = 5
#: Range of the Platt slope: positive (a map never reverses the ranking) and finite.
SLOPE_BOUNDS = (1e-3, 1e3)
#: Bins of the expected calibration error (equal width over [0, 1]).
ECE_BINS = 15
_EPS = 1e-6


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Firth-penalised fit of ``sigmoid(a z + b)``; returns a, b and their covariance (the inverse Fisher
    information). The fit runs on centred logits, for conditioning, and is mapped back."""
    centre = float(z.mean())
    x = np.column_stack([z - centre, np.ones_like(z)])

    def information(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = x @ theta
        p = expit(u)
        return u, p, x.T @ (x * (p * (1 - p))[:, None])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u, p, info = information(theta)
        value = float(np.sum(np.logaddexp(0.0, u) - y * u)) - 0.5 * float(np.linalg.slogdet(info)[1])
        # Firth's modified score: sum (y - p + h (1/2 - p)) x, h the hat-matrix diagonal
        h = p * (1 - p) * np.einsum("ij,jk,ik->i", x, np.linalg.pinv(info), x)
        return value, -(x.T @ (y - p + h * (0.5 - p)))

    start = np.array([1.0, float(logit(np.clip(y.mean(), 0.01, 0.99)))])
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[SLOPE_BOUNDS, (-50.0, 50.0)])
    a, b_centred = (float(v) for v in res.x)
    jac = np.array([[1.0, 0.0], [-centre, 1.0]])  # (a, b) = (a, b_centred - a * centre)
    return a, b_centred - a * centre, jac @ np.linalg.pinv(information(res.x)[2]) @ jac.T


def fit_calibration(
    raw_logits: object,
    y_true: object,
    *,
    prior_shift: float = 0.0,
    method: str = "platt",
    groups: object | None = None,
) -> Calibration:
    """Fit the map from raw logits to calibrated probabilities on validation cells (never test cells).

    Parameters
    ----------
    raw_logits
        The model's logits of the validation cells.
    y_true
        Their 0/1 labels (1 = CTC).
    prior_shift
        The logit shift the training's class weighting introduced (``log`` of the positive class weight).
    method
        ``platt`` (default), ``isotonic``, or ``none`` (only the prior shift).
    groups
        The patient of each validation cell: the spread of their counts around the map gives the between-patient
        variance of a logit offset (:func:`between_patient_offset`, shrunk towards a default measured on our
        benchmark); without ``groups`` no between-patient variation is assumed.

    Returns
    -------
    Calibration
        With one class only in ``y_true`` the map is the prior-shift correction alone.

    Examples
    --------
    >>> cal = fit_calibration([3.0, 2.5, -1.0, 4.0], [1, 1, 0, 1], prior_shift=0.0)
    >>> cal.method, cal.n_cells, cal.n_ctc
    ('platt', 4, 3)
    """
    z_raw = as_scores(raw_logits, "logits", probability=False)
    y = as_binary(y_true).astype(np.float64)
    check_lengths(logits=z_raw, y_true=y)
    if method not in ("platt", "isotonic", "none"):
        raise CtcidError(f"calibration method must be platt, isotonic or none, got {method!r}")
    z = z_raw - float(prior_shift)
    n, n_pos = int(y.size), int(y.sum())
    base = {"prior_shift": float(prior_shift), "n_cells": n, "n_ctc": n_pos}
    if method == "none" or n_pos == 0 or n_pos == n:
        return Calibration(method="platt", **base)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip", increasing=True).fit(z, y)
        return Calibration(
            method="isotonic",
            iso_x=tuple(float(v) for v in iso.X_thresholds_),
            iso_y=tuple(float(v) for v in iso.y_thresholds_),
            **base,
        )
    a, b, cov = _platt(z, y)
    between = 0.0 if groups is None else between_patient_offset(expit(a * z + b), y, groups)
    return Calibration(
        method="platt",
        slope=a,
        intercept=b,
        cov=((cov[0, 0], cov[0, 1]), (cov[1, 0], cov[1, 1])),
        between=between,
        **base,
    )


def between_patient_offset(p: object, y_true: object, groups: object) -> float:
    """Between-patient variance of a per-patient logit offset from the calibration map.

    Each patient's offset is one Newton step from 0, ``(observed - expected CTCs) / sum p(1 - p)`` (capped at
    +/- 5), with sampling variance ``1 / sum p(1 - p)``; their spread beyond sampling gives a DerSimonian-Laird
    estimate. A validation set holds few patients, so the estimate is shrunk towards :data:`DEFAULT_BETWEEN` as
    if that value had been seen on :data:`PRIOR_PATIENTS` patients; with no patient to measure, it is the default.

    >>> rng = np.random.default_rng(0)
    >>> p = np.full(4000, 0.2)
    >>> groups = np.repeat(np.arange(40), 100)
    >>> same = (rng.random(4000) < 0.2).astype(int)
    >>> between_patient_offset(p, same, groups) < DEFAULT_BETWEEN
    True
    >>> shifted = (rng.random(4000) < np.repeat(rng.choice([0.05, 0.5], 40), 100)).astype(int)
    >>> between_patient_offset(p, shifted, groups) > DEFAULT_BETWEEN
    True
    """
    p = as_scores(p)
    y = as_binary(y_true).astype(np.float64)
    _, g = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n = g.max() + 1 if g.size else 0
    v = np.bincount(g, weights=p * (1 - p), minlength=n)
    resid = np.bincount(g, weights=y - p, minlength=n)
    use = v > 1e-3
    k = int(use.sum())
    estimate = 0.0
    if k >= 2:
        w, b = v[use], np.clip(resid[use] / v[use], -5.0, 5.0)
        mean = float((w * b).sum() / w.sum())
        q = float((w * (b - mean) ** 2).sum())
        denom = float(w.sum() - (w * w).sum() / w.sum())
        estimate = max(0.0, (q - (k - 1)) / denom) if denom > 0 else 0.0
    return float((k * estimate + PRIOR_PATIENTS * DEFAULT_BETWEEN) / (k + PRIOR_PATIENTS))


def expected_calibration_error(y_true: object, p: object, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the cell-weighted mean over ``bins`` equal-width probability bins of
    ``|observed CTC fraction - mean predicted probability|``.

    Examples
    --------
    >>> expected_calibration_error([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0])
    0.0
    >>> round(expected_calibration_error([0, 1], [0.5, 0.5]), 3)
    0.0
    >>> round(expected_calibration_error([0, 0], [0.9, 0.9]), 3)
    0.9
    """
    y = as_binary(y_true).astype(np.float64)
    s = as_scores(p)
    n = check_lengths(y_true=y, p=s)
    if n == 0:
        return float("nan")
    idx = np.minimum((s * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, weights=y, minlength=bins) - np.bincount(idx, weights=s, minlength=bins))
    return float(gap.sum() / count.sum())
