"""The survival statistics of a CTC count: Kaplan-Meier, log-rank, Cox regression, Harrell's C, agreement.

Everything survival-specific is computed by lifelines, the field's standard in Python (Kaplan-Meier with
Greenwood's exponential intervals, the log-rank test, Cox proportional hazards with the Schoenfeld-residual check,
Harrell's concordance index); this module turns arrays into those calls and their results into plain numbers.
A higher count means a worse prognosis, so the C-index of a count is ``concordance_index(time, -count, event)``.

Intervals that resample patients (the C-index, the paired difference of two C-indices, Spearman's rho and
Cohen's kappa between two sources) use one set of bootstrap draws for every statistic, so differences are paired.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError
from lifelines.statistics import logrank_test, proportional_hazard_test
from lifelines.utils import concordance_index, median_survival_times
from scipy import stats as sps

__all__ = [
    "MIN_EVENTS_COX",
    "agreement",
    "bootstrap_intervals",
    "c_index",
    "cohen_kappa",
    "cox_model",
    "dichotomise",
    "kaplan_meier",
    "km_table",
    "logrank",
    "median_follow_up",
    "median_survival",
    "optimal_cutoff",
]

#: Cox regression is refused below this many events.
MIN_EVENTS_COX = 10


def _arrays(time: object, event: object) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=np.int64)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError(f"time and event must be 1-d of one length, got {t.shape} and {e.shape}")
    return t, e


def _finite(x: float) -> float | None:
    """``None`` for NaN or infinity (JSON has neither), else a float."""
    x = float(x)
    return x if math.isfinite(x) else None


def dichotomise(counts: object, cutoff: float, *, round_counts: bool = True) -> np.ndarray:
    """True where a count is at or above the cut-off.

    A cut-off such as CellSearch's ">= 5 CTCs" is defined on whole cells. An estimate that is a sum of
    probabilities puts a patient with five CTCs at 4.97, just below it; with ``round_counts`` the counts are first
    rounded to whole numbers (halves up), so the cut-off means what it means for a manual count.

    Examples
    --------
    >>> dichotomise([4.49, 4.5, 4.97, 5, 7.2], 5).tolist()
    [False, True, True, True, True]
    >>> dichotomise([4.49, 4.5, 4.97, 5, 7.2], 5, round_counts=False).tolist()
    [False, False, False, True, True]
    """
    c = np.asarray(counts, dtype=np.float64)
    if round_counts:
        c = np.floor(c + 0.5)
    return c >= cutoff


def kaplan_meier(time: object, event: object, *, label: str | None = None) -> KaplanMeierFitter:
    """A fitted :class:`lifelines.KaplanMeierFitter` with 95% Greenwood (exponential) intervals."""
    t, e = _arrays(time, event)
    return KaplanMeierFitter().fit(t, e, label=label or "KM")


def km_table(time: object, event: object) -> pd.DataFrame:
    """The Kaplan-Meier estimate at each distinct time: at risk, events, censored, survival and its 95% CI.

    Examples
    --------
    >>> km_table([1, 2, 3, 4, 5], [1, 0, 1, 1, 0])["survival"].round(4).tolist()
    [0.8, 0.8, 0.5333, 0.2667, 0.2667]
    """
    k = kaplan_meier(time, event)
    table = k.event_table.loc[k.event_table["removed"] > 0]
    surv = k.survival_function_.iloc[:, 0]
    ci = k.confidence_interval_
    return pd.DataFrame(
        {
            "time": table.index.to_numpy(np.float64),
            "at_risk": table["at_risk"].to_numpy(np.int64),
            "events": table["observed"].to_numpy(np.int64),
            "censored": table["censored"].to_numpy(np.int64),
            "survival": surv.loc[table.index].to_numpy(np.float64),
            "lo": ci.iloc[:, 0].loc[table.index].to_numpy(np.float64),
            "hi": ci.iloc[:, 1].loc[table.index].to_numpy(np.float64),
        }
    )


def median_survival(k: KaplanMeierFitter) -> tuple[float | None, float | None, float | None]:
    """Median survival and its 95% interval; ``None`` where the curve does not reach 0.5 (not reached)."""
    med = _finite(k.median_survival_time_)
    ci = median_survival_times(k.confidence_interval_)
    return med, _finite(ci.iloc[0, 0]), _finite(ci.iloc[0, 1])


def median_follow_up(time: object, event: object) -> float | None:
    """Median follow-up by the reverse Kaplan-Meier method (censoring as the event; Schemper and Smith 1996).

    Examples
    --------
    >>> median_follow_up([2, 4, 6, 8, 10], [1, 0, 0, 1, 0])  # censored at 4, 6, 10: 3/4, then 3/4 * 2/3
    6.0
    """
    t, e = _arrays(time, event)
    if not (e == 0).any():
        return None
    return _finite(KaplanMeierFitter().fit(t, 1 - e).median_survival_time_)


def logrank(time: object, event: object, group: object) -> dict[str, float | None]:
    """The log-rank test of two groups (``group`` true/false).

    Returns ``chi2`` (1 degree of freedom) and ``p``; both ``None`` when a group is empty or there is no event.

    Examples
    --------
    >>> r = logrank([1, 2, 3, 4], [1, 1, 1, 1], [True, False, True, False])
    >>> round(r["chi2"], 4)  # (O - E)^2 / V = (2 - 4/3)^2 / (13/18)
    0.6154
    """
    t, e = _arrays(time, event)
    g = np.asarray(group, dtype=bool)
    if g.all() or not g.any() or not e.any():
        return {"chi2": None, "p": None}
    res = logrank_test(t[g], t[~g], e[g], e[~g])
    return {"chi2": _finite(res.test_statistic), "p": _finite(res.p_value)}


def c_index(time: object, event: object, count: object) -> float | None:
    """Harrell's C of a count as a marker of risk (a higher count predicting an earlier event).

    Pairs whose counts tie count one half; ``None`` without a comparable pair (no event).

    Examples
    --------
    >>> c_index([1, 2, 3, 4], [1, 1, 1, 1], [9, 5, 2, 0])
    1.0
    >>> c_index([1, 2, 3, 4], [1, 1, 1, 1], [0, 2, 5, 9])
    0.0
    """
    t, e = _arrays(time, event)
    c = np.asarray(count, dtype=np.float64)
    if not e.any() or len(t) < 2:
        return None
    try:
        return _finite(concordance_index(t, -c, e))
    except ZeroDivisionError:  # no admissible pair
        return None


def _design(frame: pd.DataFrame, term: str, covariates: Iterable[str]) -> pd.DataFrame:
    """``time``, ``event``, the count term and the covariates, categories as indicator columns."""
    cols = {"time": frame["time"].to_numpy(np.float64), "event": frame["event"].to_numpy(np.int64)}
    cols[term] = frame[term].to_numpy(np.float64)
    design = pd.DataFrame(cols, index=frame.index)
    for name in covariates:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            design[name] = col.to_numpy(np.float64)
        else:
            levels = sorted(col.astype(str).unique())
            for level in levels[1:]:  # the first level (sorted) is the reference
                design[f"{name}={level}"] = (col.astype(str) == level).to_numpy(np.float64)
    return design


def cox_model(frame: pd.DataFrame, term: str, covariates: Iterable[str] = ()) -> dict[str, Any]:
    """Cox proportional hazards of ``term`` (adjusted for ``covariates``) and the proportional-hazards check.

    Parameters
    ----------
    frame
        ``time``, ``event``, the column ``term`` and the covariates.
    term
        The count term (the dichotomised count, or log(1 + count)).
    covariates
        Clinical columns; numeric ones enter as they are, others as indicators against their first level.

    Returns
    -------
    dict
        ``hr``, ``lo``, ``hi`` (95% Wald interval), ``p`` (Wald), ``ph_p`` (Grambsch-Therneau test on scaled
        Schoenfeld residuals against rank time) for the term; ``terms``: the same for every term; ``warnings``;
        ``error``: why there is no fit (``None`` when fitted).
    """
    covariates = list(covariates)
    empty: dict[str, Any] = {"hr": None, "lo": None, "hi": None, "p": None, "ph_p": None, "terms": {}}
    design = _design(frame, term, covariates)
    constant = [c for c in design.columns[2:] if np.ptp(design[c].to_numpy()) == 0]
    if constant:
        return {**empty, "warnings": [], "error": f"{', '.join(constant)} is the same for every patient"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = CoxPHFitter().fit(design, duration_col="time", event_col="event")
            ph = proportional_hazard_test(fit, design, time_transform="rank").summary["p"]
        except (ConvergenceError, np.linalg.LinAlgError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {**empty, "warnings": [], "error": f"the Cox fit failed ({message[:200]})"}
    notes = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if "ConvergenceWarning" in type(w.message).__name__ or "converge" in text.lower() or "variance" in text:
            notes.append(text[:300])
    hr = fit.hazard_ratios_
    ci = np.exp(fit.confidence_intervals_)
    p = fit.summary["p"]
    terms = {
        str(name): {
            "hr": _finite(hr[name]),
            "lo": _finite(ci.loc[name].iloc[0]),
            "hi": _finite(ci.loc[name].iloc[1]),
            "p": _finite(p[name]),
            "ph_p": _finite(ph.get(name, float("nan"))),
        }
        for name in hr.index
    }
    return {**terms[term], "terms": terms, "warnings": list(dict.fromkeys(notes)), "error": None}


def cohen_kappa(a: object, b: object) -> float | None:
    """Cohen's kappa of two binary ratings; ``None`` when chance agreement is 1 (both constant and equal).

    Examples
    --------
    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0])
    0.5
    """
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    po = float(np.mean(x == y))
    px, py = float(x.mean()), float(y.mean())
    pe = px * py + (1 - px) * (1 - py)
    return None if pe >= 1.0 else (po - pe) / (1.0 - pe)


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return _finite(sps.spearmanr(x, y).statistic)


def agreement(reference: object, other: object, cutoff: float, *, round_counts: bool = True) -> dict[str, Any]:
    """How two sources' counts agree: Spearman's rho, Cohen's kappa at the cut-off, Bland-Altman.

    The groups at the cut-off are those of :func:`dichotomise` (``round_counts``); the other statistics use the
    counts as they are.

    Bland-Altman differences are ``other - reference`` (CTCs per 7.5 mL); the limits of agreement are the mean
    difference ± 1.96 standard deviations.

    Examples
    --------
    >>> a = agreement([0, 2, 6, 10], [1, 2, 5, 12], cutoff=5)
    >>> a["kappa"], a["both_high"], a["ba_bias"]
    (1.0, 2, 0.5)
    """
    r = np.asarray(reference, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    hr, ho = dichotomise(r, cutoff, round_counts=round_counts), dichotomise(o, cutoff, round_counts=round_counts)
    diff = o - r
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
    bias = float(diff.mean())
    return {
        "spearman": _spearman(r, o),
        "kappa": cohen_kappa(hr, ho),
        "agreement": float(np.mean(hr == ho)),
        "both_high": int((hr & ho).sum()),
        "reference_only": int((hr & ~ho).sum()),
        "other_only": int((~hr & ho).sum()),
        "both_low": int((~hr & ~ho).sum()),
        "ba_bias": bias,
        "ba_sd": _finite(sd),
        "ba_loa_lo": _finite(bias - 1.96 * sd),
        "ba_loa_hi": _finite(bias + 1.96 * sd),
        "mean_abs_diff": float(np.abs(diff).mean()),
    }


def _percentile(values: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    v = values[np.isfinite(values)]
    if not v.size:
        return None, None
    lo, hi = np.percentile(v, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(lo), float(hi)


def bootstrap_intervals(
    time: object,
    event: object,
    counts: Mapping[str, object],
    *,
    cutoff: float,
    round_counts: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap intervals, resampling patients, for every source and for each against the first.

    Parameters
    ----------
    time, event
        Follow-up and event indicator per patient.
    counts
        ``{name: counts}``, in one patient order; the first is the reference.
    cutoff, round_counts
        Cut-off of Cohen's kappa, and whether counts are rounded first (:func:`dichotomise`).
    n_boot, seed, ci
        Resamples, their seed and the interval's coverage.

    Returns
    -------
    dict
        ``sources``: ``{name: (c_lo, c_hi)}``; ``comparisons``: ``{name: {"c_diff_lo", "c_diff_hi", "c_diff_p",
        "spearman_lo", "spearman_hi", "kappa_lo", "kappa_hi"}}`` for every source after the first; ``valid``: the
        resamples with at least one event (the others are skipped). ``c_diff_p`` is the two-sided bootstrap
        p-value of no difference, ``2 * min(P(d <= 0), P(d >= 0))``.
    """
    t, e = _arrays(time, event)
    names = list(counts)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in counts.items()}
    high = {k: dichotomise(v, cutoff, round_counts=round_counts) for k, v in arrays.items()}
    n = len(t)
    rng = np.random.default_rng(seed)
    c = {k: np.full(n_boot, np.nan) for k in names}
    rho = {k: np.full(n_boot, np.nan) for k in names[1:]}
    kap = {k: np.full(n_boot, np.nan) for k in names[1:]}
    valid = 0
    ref = names[0]
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        if not e[idx].any():
            continue
        valid += 1
        for k in names:
            v = c_index(t[idx], e[idx], arrays[k][idx])
            c[k][b] = np.nan if v is None else v
        for k in names[1:]:
            x, y = arrays[ref][idx], arrays[k][idx]
            s = _spearman(x, y)
            rho[k][b] = np.nan if s is None else s
            kv = cohen_kappa(high[ref][idx], high[k][idx])
            kap[k][b] = np.nan if kv is None else kv
    out: dict[str, Any] = {"sources": {k: _percentile(c[k], ci) for k in names}, "comparisons": {}, "valid": valid}
    for k in names[1:]:
        d = c[k] - c[ref]
        d = d[np.isfinite(d)]
        lo, hi = _percentile(d, ci)
        p = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0)))) if d.size else None
        r_lo, r_hi = _percentile(rho[k], ci)
        k_lo, k_hi = _percentile(kap[k], ci)
        out["comparisons"][k] = {
            "c_diff_lo": lo,
            "c_diff_hi": hi,
            "c_diff_p": p,
            "spearman_lo": r_lo,
            "spearman_hi": r_hi,
            "kappa_lo": k_lo,
            "kappa_hi": k_hi,
        }
    return out


def optimal_cutoff(time: object, event: object, count: object, *, min_share: float = 0.1) -> dict[str, Any]:
    """The cut-off that maximises the log-rank statistic: optimistic, to be confirmed on other patients.

    Candidates are the observed count values that leave at least ``min_share`` of the patients in each group.
    The naive p-value of the chosen split ignores the search and is far too small; ``p_adjusted`` is the
    approximation of Lausen and Schumacher (1992, Biometrics 48:73-85) for a maximally selected standardised
    statistic ``m`` over the share range ``[e, 1 - e]``:
    ``phi(m) (m - 1/m) log((1 - e)^2 / e^2) + 4 phi(m) / m``, kept between the naive p-value and 1.

    Returns
    -------
    dict
        ``cutoff``, ``chi2``, ``p_naive``, ``p_adjusted``, ``n_high``, ``candidates``; the values are ``None``
        when no candidate leaves enough patients on both sides.
    """
    t, e = _arrays(time, event)
    c = np.asarray(count, dtype=np.float64)
    best: tuple[float, float] | None = None
    tried = 0
    for v in np.unique(c):
        high = c >= v
        share = high.mean()
        if share < min_share or share > 1 - min_share:
            continue
        tried += 1
        r = logrank(t, e, high)
        if r["chi2"] is not None and (best is None or r["chi2"] > best[1]):
            best = (float(v), r["chi2"])
    if best is None:
        none = dict.fromkeys(("cutoff", "chi2", "p_naive", "p_adjusted", "n_high"))
        return {**none, "candidates": tried}
    v, chi2 = best
    m = math.sqrt(chi2)
    p_naive = float(sps.chi2.sf(chi2, 1))
    eps = min_share
    phi = sps.norm.pdf(m)
    p_adj = phi * (m - 1 / m) * math.log((1 - eps) ** 2 / eps**2) + 4 * phi / m if m > 0 else 1.0
    return {
        "cutoff": v,
        "chi2": chi2,
        "p_naive": p_naive,
        "p_adjusted": float(min(1.0, max(p_naive, p_adj))),
        "n_high": int((c >= v).sum()),
        "candidates": tried,
    }
