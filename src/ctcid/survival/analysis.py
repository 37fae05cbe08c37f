"""``ctcid survival``: do a source's CTC counts predict survival, and as well as the reference's?

For each source of counts (the first is the reference, typically manual counts; the others, e.g. a model's
predictions, are compared with it), on the patients that have a clinical record and a count from every source:

- Kaplan-Meier curves split at the cut-off (default 5 CTCs per 7.5 mL, the CellSearch threshold), with numbers
  at risk, and the log-rank test;
- Cox proportional hazards of the dichotomised count and of ``log(1 + count)``, optionally adjusted for clinical
  covariates, with hazard ratio, 95% Wald interval, p-value and the Grambsch-Therneau proportional-hazards check;
- Harrell's C-index of the count with a patient-bootstrap 95% interval;

and for each source against the reference: the paired bootstrap difference of C-indices
``c_diff = C(source) - C(reference)`` with its interval, Spearman's rho, Cohen's kappa at the cut-off and a
Bland-Altman analysis. A cut-off chosen on the data (maximal log-rank statistic) is given only when asked for,
marked optimistic, with a p-value adjusted for the search.

Outputs (``OUT/``): ``survival.json``, ``survival.md``, ``patients.csv`` (the analysed table), ``km_<NAME>.png``
per source and, with two sources or more, ``bland_altman.png``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lifelines
import numpy as np
import pandas as pd

from .._version import __version__
from ..config import ConfigError
from ..errors import CtcidError, arg
from ..io import atomic_dir
from ..io._atomic import check_output_dir
from .data import CountSource, count_columns, read_clinical, read_counts
from .plots import plot_bland_altman, plot_km
from .stats import (
    MIN_EVENTS_COX,
    agreement,
    bootstrap_intervals,
    c_index,
    cox_model,
    dichotomise,
    kaplan_meier,
    logrank,
    median_follow_up,
    median_survival,
    optimal_cutoff,
)

__all__ = [
    "FORMAT_VERSION",
    "SurvivalResult",
    "analyse_survival",
    "comparison_table",
    "summary_table",
    "survival_analysis",
    "to_markdown",
    "verdict",
]

#: Version of the layout of ``survival.json``.
FORMAT_VERSION = 1
#: Fewer matched patients than this is refused.
MIN_PATIENTS = 10
#: Names used inside the Cox design, so not allowed as covariates.
_RESERVED = {"time", "event", "ctc_high", "log1p_ctc"}


@dataclass
class SurvivalResult:
    """A survival analysis in memory.

    Attributes
    ----------
    result
        The content of ``survival.json``.
    markdown
        The content of ``survival.md``.
    images
        PNG bytes by file name (``km_<NAME>.png``, ``bland_altman.png``).
    patients
        The analysed table: ``sample_id``, ``time_months``, ``event``, the covariates and ``<NAME>_ctc`` (CTCs
        per 7.5 mL) per source.
    out
        The folder written by :func:`analyse_survival`, else ``None``.
    """

    result: dict[str, Any]
    markdown: str
    images: dict[str, bytes] = field(default_factory=dict)
    patients: pd.DataFrame | None = None
    out: Path | None = None


def _check_options(cutoff: float, n_boot: int, margin: float, covariates: list[str]) -> None:
    if not isinstance(cutoff, numbers.Real) or not math.isfinite(cutoff) or cutoff <= 0:
        raise ConfigError("cutoff", f"must be a positive number of CTCs per 7.5 mL, got {cutoff!r}", "--cutoff")
    if (
        not isinstance(n_boot, numbers.Integral)
        or isinstance(n_boot, bool)
        or not (n_boot == 0 or 100 <= n_boot <= 100_000)
    ):
        raise ConfigError(
            "n_boot", f"must be 0 (no intervals) or between 100 and 100000, got {n_boot!r}", "--n-boot"
        )
    if not isinstance(margin, numbers.Real) or not 0 < margin < 0.5:
        raise ConfigError(
            "margin", f"must be between 0 and 0.5 (a C-index difference), got {margin!r}", "--margin"
        )
    reserved = sorted(set(covariates) & _RESERVED)
    if reserved:
        raise CtcidError(f"covariate name(s) {', '.join(reserved)} are used internally; rename the column(s)")
    if len(set(covariates)) != len(covariates):
        raise CtcidError("a covariate is named twice")


def _match(clin: pd.DataFrame, sources: list[CountSource], clinical_path: Path | None) -> tuple[list[str], dict]:
    """Patients with a clinical record and a count from every source (clinical order), and the match counts."""
    clin_ids = clin["sample_id"].tolist()
    clin_set = set(clin_ids)
    matching: dict[str, Any] = {}
    common = clin_set.copy()
    for src in sources:
        ids = set(src.counts.index)
        matching[src.name] = {
            "counts": len(ids),
            "matched": len(ids & clin_set),
            "counts_without_clinical": len(ids - clin_set),
            "clinical_without_counts": len(clin_set - ids),
        }
        common &= ids
    if len(common) < MIN_PATIENTS:
        detail = ", ".join(f"{k}: {v['matched']} of {v['counts']} counts matched" for k, v in matching.items())
        raise CtcidError(
            f"only {len(common)} patient(s) have a clinical record and a count from every source ({detail}; "
            f"{len(clin_ids)} patients in the clinical table); at least {MIN_PATIENTS} are needed: check that the "
            "sample ids agree",
            clinical_path,
        )
    return [i for i in clin_ids if i in common], matching


def _p(v: float | None) -> str:
    if v is None:
        return "n/a"
    return "<0.001" if v < 0.001 else f"{v:.3f}" if v < 0.1 else f"{v:.2f}"


def _ci(v: float | None, lo: float | None, hi: float | None, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def _median(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f}"


def _analyse_source(
    data: pd.DataFrame,
    counts: np.ndarray,
    name: str,
    cutoff: float,
    covariates: list[str],
    do_cox: bool,
    round_counts: bool,
) -> tuple[dict[str, Any], list[str]]:
    t, e = data["time"].to_numpy(), data["event"].to_numpy()
    high = dichotomise(counts, cutoff, round_counts=round_counts)
    notes: list[str] = []
    fractional = bool(np.any(counts != np.round(counts)))
    moved = high != dichotomise(counts, cutoff, round_counts=not round_counts)
    near = int(moved.sum())
    if fractional and near:
        notes.append(
            f"{name}: the counts are not whole numbers and {near} patient(s) change group at the cut-off with "
            f"rounding (e.g. {counts[moved][0]:.2f}); "
            + (
                "the groups at the cut-off use counts rounded to whole numbers"
                if round_counts
                else "the groups at the cut-off use the counts as they are "
                f"({arg('round_counts', False, flag='--no-round-counts')})"
            )
        )
    res: dict[str, Any] = {
        "fractional": fractional,
        "changed_by_rounding": near if fractional else 0,
        "n_high": int(high.sum()),
        "n_low": int((~high).sum()),
        "events_high": int(e[high].sum()),
        "events_low": int(e[~high].sum()),
        "count_mean": float(counts.mean()),
        "count_median": float(np.median(counts)),
        "count_max": float(counts.max()),
        "share_zero": float(np.mean(counts == 0)),
    }
    for label, mask in (("high", high), ("low", ~high)):
        if mask.any():
            med, lo, hi = median_survival(kaplan_meier(t[mask], e[mask]))
        else:
            med = lo = hi = None
        res[f"median_months_{label}"], res[f"median_months_{label}_lo"], res[f"median_months_{label}_hi"] = (
            med,
            lo,
            hi,
        )
    lr = logrank(t, e, high)
    res["logrank_chi2"], res["logrank_p"] = lr["chi2"], lr["p"]
    both = high.any() and (~high).any()
    if not both:
        side = "at or above" if high.all() else "below"
        notes.append(
            f"{name}: every patient is {side} the cut-off ({cutoff:g} CTCs per 7.5 mL), so there is no "
            "dichotomised comparison (log-rank, dichotomised hazard ratio)"
        )
    frame = pd.DataFrame(
        {"time": t, "event": e, "ctc_high": high.astype(np.float64), "log1p_ctc": np.log1p(counts)}
    )
    for c in covariates:
        frame[c] = data[c].to_numpy()
    keys = ("hr", "lo", "hi", "p", "ph_p")
    for kind, term, ok in (("dichotomised", "ctc_high", both), ("continuous", "log1p_ctc", True)):
        fit: dict[str, Any] = {"hr": None, "lo": None, "hi": None, "p": None, "ph_p": None, "terms": {}}
        if do_cox and ok:
            fit = cox_model(frame, term, covariates)
            if fit["error"]:
                notes.append(f"{name}: no {kind} Cox model: {fit['error']}")
            for w in fit["warnings"]:
                notes.append(f"{name}, {kind} Cox model: {w}")
            if fit["ph_p"] is not None and fit["ph_p"] < 0.05:
                notes.append(
                    f"{name}: the proportional-hazards check rejects the {kind} count (p = {_p(fit['ph_p'])}); "
                    "its hazard ratio is an average over follow-up and the Kaplan-Meier curves show how it changes"
                )
        for k, out_key in zip(
            keys, (f"hr_{kind}", f"hr_{kind}_lo", f"hr_{kind}_hi", f"p_{kind}", f"ph_p_{kind}"), strict=True
        ):
            res[out_key] = fit[k]
        res[f"cox_{kind}_terms"] = fit["terms"]
    if both and do_cox and min(res["events_high"], res["events_low"]) < 5:
        notes.append(
            f"{name}: only {min(res['events_high'], res['events_low'])} event(s) in one group at the cut-off; the "
            "dichotomised hazard ratio is imprecise"
        )
    res["c_index"] = c_index(t, e, counts)
    return res, notes


@dataclass
class _Cohort:
    """The analysed patients: those with a clinical record and a count from every source, in clinical order."""

    clinical: pd.DataFrame
    clinical_path: Path | None
    names: list[str]
    sources: list[CountSource]
    matching: dict[str, Any]
    ids: list[str]
    data: pd.DataFrame
    time: np.ndarray
    event: np.ndarray
    values: dict[str, np.ndarray]

    @property
    def n_events(self) -> int:
        return int(self.event.sum())


def _read_cohort(
    clinical: str | os.PathLike[str] | pd.DataFrame,
    counts: Mapping[str, str | os.PathLike[str] | pd.DataFrame],
    covariates: list[str],
    count_column: str | Mapping[str, str] | None,
    time_column: str,
    event_column: str,
) -> _Cohort:
    """Read the clinical table and every source of counts, and keep the patients common to all of them."""
    if not counts:
        raise CtcidError(f"give at least one source of counts ({arg('counts', {'NAME': 'FILE'})})")
    names = list(counts)
    clin = read_clinical(clinical, time_column=time_column, event_column=event_column, covariates=covariates)
    clinical_path = None if isinstance(clinical, pd.DataFrame) else Path(clinical)
    columns = count_columns(count_column, names)
    sources = [read_counts(counts[n], name=n, column=columns[n], clinical=clin) for n in names]
    ids, matching = _match(clin, sources, clinical_path)
    data = clin.set_index("sample_id").loc[ids].reset_index()
    return _Cohort(
        clinical=clin,
        clinical_path=clinical_path,
        names=names,
        sources=sources,
        matching=matching,
        ids=ids,
        data=data,
        time=data["time"].to_numpy(),
        event=data["event"].to_numpy(),
        values={s.name: s.counts.loc[ids].to_numpy(np.float64) for s in sources},
    )


def _sufficiency_notes(cohort: _Cohort, covariates: list[str], do_cox: bool) -> list[str]:
    """Notes on the matching, the blood volumes and whether there are enough patients and events."""
    notes: list[str] = []
    for s in cohort.sources:
        m = cohort.matching[s.name]
        if m["counts_without_clinical"] or m["clinical_without_counts"]:
            notes.append(
                f"{s.name}: {m['matched']} of {m['counts']} counts matched the clinical table "
                f"({m['counts_without_clinical']} without a clinical record, {m['clinical_without_counts']} "
                "clinical patients without a count)"
            )
        if s.volume == "assumed 7.5 mL":
            notes.append(f"{s.name}: no blood volume given; the counts are taken as CTCs per 7.5 mL")
    n_patients, n_events = len(cohort.ids), cohort.n_events
    if n_patients < min(len(cohort.clinical), *(m["counts"] for m in cohort.matching.values())):
        notes.append(f"the analysis uses the {n_patients} patients common to the clinical table and every source")
    if not do_cox:
        notes.append(
            f"only {n_events} event(s): Cox regression is refused (it needs at least {MIN_EVENTS_COX}); the "
            "Kaplan-Meier curves, log-rank test and C-index are shown but carry little information"
        )
    else:
        data = cohort.data
        n_params = 1 + sum(
            1 if pd.api.types.is_numeric_dtype(data[c]) else data[c].astype(str).nunique() - 1 for c in covariates
        )
        if n_events / n_params < 10:
            notes.append(
                f"{n_events / n_params:.1f} events per Cox parameter (fewer than 10): the hazard ratios and their "
                "intervals may be biased"
            )
    if n_patients < 50:
        notes.append(f"only {n_patients} patients: every interval is wide")
    return notes


def _analyse_sources(
    cohort: _Cohort,
    *,
    cutoff: float,
    covariates: list[str],
    do_cox: bool,
    round_counts: bool,
    find_cutoff: bool,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The analysis of each source alone (see :func:`_analyse_source`), by name, and its notes."""
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for s in cohort.sources:
        values = cohort.values[s.name]
        res, extra = _analyse_source(cohort.data, values, s.name, cutoff, covariates, do_cox, round_counts)
        results[s.name] = {
            "column": s.column,
            "file": None if s.path is None else os.fspath(s.path),
            "volume": s.volume,
            **res,
        }
        notes += extra
        if find_cutoff:
            opt = optimal_cutoff(cohort.time, cohort.event, values)
            results[s.name]["optimal_cutoff"] = {**opt, "optimistic": True}
    return results, notes


def _bootstrap(
    cohort: _Cohort,
    results: dict[str, dict[str, Any]],
    *,
    cutoff: float,
    round_counts: bool,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Patient-bootstrap intervals: set each source's C-index interval in ``results`` and return them all."""
    boot = (
        bootstrap_intervals(
            cohort.time,
            cohort.event,
            cohort.values,
            cutoff=cutoff,
            round_counts=round_counts,
            n_boot=n_boot,
            seed=seed,
        )
        if n_boot
        else {"sources": dict.fromkeys(cohort.names, (None, None)), "comparisons": {}, "valid": 0}
    )
    for name in cohort.names:
        results[name]["c_index_lo"], results[name]["c_index_hi"] = boot["sources"][name]
    return boot


def _compare_sources(
    cohort: _Cohort,
    results: Mapping[str, Mapping[str, Any]],
    boot: Mapping[str, Any],
    *,
    cutoff: float,
    round_counts: bool,
    margin: float,
) -> dict[str, dict[str, Any]]:
    """Each source after the first against the first (the reference): C-index difference, HR ratio, agreement."""
    values = cohort.values
    ref = cohort.names[0]
    comparisons: dict[str, dict[str, Any]] = {}
    for name in cohort.names[1:]:
        a = agreement(values[ref], values[name], cutoff, round_counts=round_counts)
        c_ref, c_src = results[ref]["c_index"], results[name]["c_index"]
        diff = None if c_ref is None or c_src is None else c_src - c_ref
        b = boot["comparisons"].get(name, {})
        comparisons[name] = {
            "source": name,
            "reference": ref,
            "c_diff": diff,
            "c_diff_lo": b.get("c_diff_lo"),
            "c_diff_hi": b.get("c_diff_hi"),
            "c_diff_p": b.get("c_diff_p"),
            "noninferiority_margin": margin,
            "noninferior": None if b.get("c_diff_lo") is None else bool(b["c_diff_lo"] > -margin),
            "hr_dichotomised_ratio": (
                None
                if results[name]["hr_dichotomised"] is None or results[ref]["hr_dichotomised"] is None
                else results[name]["hr_dichotomised"] / results[ref]["hr_dichotomised"]
            ),
            "spearman": a["spearman"],
            "spearman_lo": b.get("spearman_lo"),
            "spearman_hi": b.get("spearman_hi"),
            "kappa": a["kappa"],
            "kappa_lo": b.get("kappa_lo"),
            "kappa_hi": b.get("kappa_hi"),
            **{k: v for k, v in a.items() if k not in ("spearman", "kappa")},
        }
    return comparisons


def _method_notes(find_cutoff: bool, n_boot: int, n_valid: int) -> list[str]:
    """Notes on the data-driven cut-offs and on skipped bootstrap resamples."""
    notes = []
    if find_cutoff:
        notes.append(
            "the data-driven cut-offs were chosen on these patients to maximise the log-rank statistic: they are "
            "optimistic, their naive p-values are not valid, and they need confirming on other patients"
        )
    if n_boot and n_valid < n_boot:
        notes.append(f"{n_boot - n_valid} of {n_boot} bootstrap resamples had no event and were skipped")
    return notes


def _result_dict(
    cohort: _Cohort,
    results: dict[str, dict[str, Any]],
    comparisons: dict[str, dict[str, Any]],
    notes: list[str],
    *,
    cutoff: float,
    round_counts: bool,
    covariates: list[str],
    time_column: str,
    event_column: str,
    n_boot: int,
    n_valid: int,
    seed: int,
) -> dict[str, Any]:
    """The content of ``survival.json`` (repeated notes are given once)."""
    names = cohort.names
    return {
        "format": "ctcid-survival",
        "format_version": FORMAT_VERSION,
        "patients": len(cohort.ids),
        "events": cohort.n_events,
        "median_follow_up_months": median_follow_up(cohort.time, cohort.event),
        "cutoff": float(cutoff),
        "round_counts": round_counts,
        "unit": "CTCs per 7.5 mL",
        "covariates": covariates,
        "reference": names[0],
        "clinical": {
            "file": None if cohort.clinical_path is None else os.fspath(cohort.clinical_path),
            "patients": len(cohort.clinical),
            "time_column": time_column,
            "event_column": event_column,
        },
        "matching": cohort.matching,
        "sources": results,
        "comparison": comparisons[names[1]] if len(names) > 1 else None,
        "comparisons": comparisons,
        "n_boot": n_boot,
        "n_boot_valid": n_valid,
        "seed": seed,
        "notes": list(dict.fromkeys(notes)),
        "versions": {"ctcid": __version__, "lifelines": lifelines.__version__},
    }


def _km_annotation(r: Mapping[str, Any], cutoff: float, adjusted: bool) -> str:
    """The lines printed on a Kaplan-Meier plot: dichotomised hazard ratio, log-rank p and C-index."""
    cut = f"{cutoff:g}"
    lines = []
    if r["hr_dichotomised"] is not None:
        hr = _ci(r["hr_dichotomised"], r["hr_dichotomised_lo"], r["hr_dichotomised_hi"])
        lines.append(f"HR >= {cut} vs < {cut}: {hr}" + (" (adjusted)" if adjusted else ""))
    if r["logrank_p"] is not None:
        p = _p(r["logrank_p"])
        lines.append(f"log-rank p {p.replace('<', '< ') if p.startswith('<') else '= ' + p}")
    if r["c_index"] is not None:
        lines.append(f"C-index {_ci(r['c_index'], r['c_index_lo'], r['c_index_hi'])}")
    return "\n".join(lines)


def _figures(
    cohort: _Cohort,
    results: Mapping[str, Mapping[str, Any]],
    *,
    cutoff: float,
    round_counts: bool,
    adjusted: bool,
) -> dict[str, bytes]:
    """PNG bytes by file name: a Kaplan-Meier plot per source and, with two sources or more, Bland-Altman."""
    names, values = cohort.names, cohort.values
    cut = f"{cutoff:g}"
    images = {}
    for name in names:
        images[f"km_{name}.png"] = plot_km(
            cohort.time,
            cohort.event,
            dichotomise(values[name], cutoff, round_counts=round_counts),
            title=f"{name}: survival by CTC count ({results[name]['column']})",
            labels=(f"< {cut}", f">= {cut}"),
            unit="CTCs per 7.5 mL",
            annotation=_km_annotation(results[name], cutoff, adjusted),
        )
    if len(names) > 1:
        images["bland_altman.png"] = plot_bland_altman(
            values[names[0]], {n: values[n] for n in names[1:]}, reference_name=names[0]
        )
    return images


def _patients_table(cohort: _Cohort, covariates: list[str], time_column: str, event_column: str) -> pd.DataFrame:
    """The analysed table: ``sample_id``, follow-up, event, the covariates and ``<NAME>_ctc`` per source."""
    patients = pd.DataFrame({"sample_id": cohort.ids, time_column: cohort.time, event_column: cohort.event})
    for c in covariates:
        patients[c] = cohort.data[c].to_numpy()
    for name in cohort.names:
        patients[f"{name}_ctc"] = cohort.values[name]
    return patients


def survival_analysis(
    clinical: str | os.PathLike[str] | pd.DataFrame,
    counts: Mapping[str, str | os.PathLike[str] | pd.DataFrame],
    *,
    cutoff: float = 5.0,
    covariates: Iterable[str] = (),
    count_column: str | Mapping[str, str] | None = None,
    time_column: str = "time_months",
    event_column: str = "event",
    find_cutoff: bool = False,
    round_counts: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    margin: float = 0.05,
) -> SurvivalResult:
    """Analyse whether CTC counts predict survival, for one or more sources of counts; nothing is written.

    Parameters
    ----------
    clinical
        Clinical table (CSV path or DataFrame): ``sample_id``, ``time_months``, ``event``, optional covariates
        and ``blood_volume_ml`` (see :func:`ctcid.survival.read_clinical`).
    counts
        ``{name: counts file or DataFrame}``, in order; the first is the reference (e.g. ``manual``).
    cutoff
        Cut-off in CTCs per 7.5 mL: a patient is "high" at or above it.
    covariates
        Clinical columns to adjust the Cox models for.
    count_column
        The count column of every source, or ``{name: column}``; by default ``ctc_estimate``, ``called_ctc``,
        ``predicted_ctc``, or the file's only numeric column.
    time_column, event_column
        Names of the follow-up (months) and event columns of the clinical table.
    find_cutoff
        Also search the cut-off with the largest log-rank statistic (optimistic; reported apart).
    round_counts
        Round counts to whole numbers (halves up) before comparing them with the cut-off, as a manual count is:
        an estimate of 4.97 for a patient with five CTCs is then at the cut-off, not below it. The continuous
        analyses (Cox of log(1 + count), C-index, Spearman, Bland-Altman) always use the counts as they are.
    n_boot
        Bootstrap resamples of patients for the intervals of C-indices, their differences, Spearman and kappa
        (0: no intervals).
    seed
        Seed of the resampling.
    margin
        Non-inferiority margin of the C-index difference: a source is called non-inferior when the lower end of
        the interval of ``C(source) - C(reference)`` lies above ``-margin``.

    Returns
    -------
    SurvivalResult

    Raises
    ------
    CtcidError
        Bad clinical table or counts (see :func:`read_clinical`, :func:`read_counts`), a bad option, or fewer
        than 10 patients with a clinical record and a count from every source.
    """
    covariates = list(covariates)
    _check_options(cutoff, n_boot, margin, covariates)
    cohort = _read_cohort(clinical, counts, covariates, count_column, time_column, event_column)
    do_cox = cohort.n_events >= MIN_EVENTS_COX
    notes = _sufficiency_notes(cohort, covariates, do_cox)
    results, source_notes = _analyse_sources(
        cohort,
        cutoff=cutoff,
        covariates=covariates,
        do_cox=do_cox,
        round_counts=round_counts,
        find_cutoff=find_cutoff,
    )
    boot = _bootstrap(cohort, results, cutoff=cutoff, round_counts=round_counts, n_boot=n_boot, seed=seed)
    comparisons = _compare_sources(cohort, results, boot, cutoff=cutoff, round_counts=round_counts, margin=margin)
    notes += source_notes + _method_notes(find_cutoff, n_boot, boot["valid"])
    result = _result_dict(
        cohort,
        results,
        comparisons,
        notes,
        cutoff=cutoff,
        round_counts=round_counts,
        covariates=covariates,
        time_column=time_column,
        event_column=event_column,
        n_boot=n_boot,
        n_valid=boot["valid"],
        seed=seed,
    )
    images = _figures(cohort, results, cutoff=cutoff, round_counts=round_counts, adjusted=bool(covariates))
    patients = _patients_table(cohort, covariates, time_column, event_column)
    return SurvivalResult(result=result, markdown=to_markdown(result), images=images, patients=patients)


def summary_table(result: Mapping[str, Any], *, brief: bool = False) -> pd.DataFrame:
    """One row per source: groups at the cut-off, medians, log-rank, hazard ratios and C-index, as text.

    With ``brief``, only the source, the C-index, the dichotomised hazard ratio and the log-rank p-value.
    """
    cut = f"{result['cutoff']:g}"
    rows = []
    for name, r in result["sources"].items():
        rows.append(
            {
                "source": name,
                "count column": r["column"],
                f">= {cut} (events)": f"{r['n_high']} ({r['events_high']})",
                f"< {cut} (events)": f"{r['n_low']} ({r['events_low']})",
                "median months >= / <": f"{_median(r['median_months_high'])} / {_median(r['median_months_low'])}",
                "log-rank p": _p(r["logrank_p"]),
                f"HR >= {cut} (95% CI)": _ci(
                    r["hr_dichotomised"], r["hr_dichotomised_lo"], r["hr_dichotomised_hi"]
                ),
                "p (HR)": _p(r["p_dichotomised"]),
                "HR per log(1+count) (95% CI)": _ci(
                    r["hr_continuous"], r["hr_continuous_lo"], r["hr_continuous_hi"]
                ),
                "C-index (95% CI)": _ci(r["c_index"], r["c_index_lo"], r["c_index_hi"], 3),
            }
        )
    table = pd.DataFrame(rows)
    if brief:
        table = table[["source", "C-index (95% CI)", f"HR >= {cut} (95% CI)", "log-rank p"]]
    return table


def comparison_table(comparison: Mapping[str, Any], cutoff: float) -> pd.DataFrame:
    """The comparison of one source with the reference, one statistic a row, as text."""
    c = comparison
    cut = f"{cutoff:g}"
    rows = [
        ("C-index difference (source - reference)", _ci(c["c_diff"], c["c_diff_lo"], c["c_diff_hi"], 3)),
        ("bootstrap p (no difference)", _p(c["c_diff_p"])),
        (
            f"non-inferior at margin {c['noninferiority_margin']:g}",
            "n/a" if c["noninferior"] is None else "yes" if c["noninferior"] else "not shown",
        ),
        (
            "ratio of dichotomised HRs (source / reference)",
            "n/a" if c["hr_dichotomised_ratio"] is None else f"{c['hr_dichotomised_ratio']:.2f}",
        ),
        ("Spearman rho", _ci(c["spearman"], c["spearman_lo"], c["spearman_hi"])),
        (f"Cohen's kappa at {cut}", _ci(c["kappa"], c["kappa_lo"], c["kappa_hi"])),
        (f"agreement at {cut}", f"{100 * c['agreement']:.1f}%"),
        (
            f"both >= {cut} / reference only / source only / both < {cut}",
            f"{c['both_high']} / {c['reference_only']} / {c['other_only']} / {c['both_low']}",
        ),
        (
            "Bland-Altman bias (95% limits of agreement)",
            _ci(c["ba_bias"], c["ba_loa_lo"], c["ba_loa_hi"]),
        ),
        ("mean absolute difference", f"{c['mean_abs_diff']:.2f}"),
    ]
    return pd.DataFrame(rows, columns=["statistic", "value"])


def _md_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def verdict(comparison: Mapping[str, Any]) -> str:
    """One sentence on whether the source loses prognostic information against the reference."""
    c = comparison
    if c["c_diff"] is None:
        return f"The C-indices of {c['source']} and {c['reference']} cannot be compared (no event)."
    text = f"The C-index of {c['source']} is {c['c_diff']:+.3f} against {c['reference']}"
    if c["c_diff_lo"] is None:
        return text + " (no interval computed)."
    text += f" (95% CI {c['c_diff_lo']:+.3f} to {c['c_diff_hi']:+.3f})"
    margin = c["noninferiority_margin"]
    if c["noninferior"]:
        return text + f": the interval excludes a loss of more than {margin:g} (non-inferior at that margin)."
    return text + f": a loss of more than {margin:g} is not excluded."


def to_markdown(result: Mapping[str, Any]) -> str:
    """``survival.md``: the tables of :func:`summary_table` and :func:`comparison_table`, notes and method."""
    cut = f"{result['cutoff']:g}"
    fu = result["median_follow_up_months"]
    covs = ", ".join(result["covariates"]) or "none"
    lines = [
        "# Do the CTC counts predict survival?",
        "",
        f"{result['patients']} patients, {result['events']} events, median follow-up "
        f"{'not estimable' if fu is None else f'{fu:.1f} months'} (reverse Kaplan-Meier). Cut-off {cut} CTCs per "
        f"7.5 mL{' (counts rounded to whole numbers first)' if result.get('round_counts') else ''}. Reference: "
        f"{result['reference']}. Cox models adjusted for: {covs}.",
        "",
        "## Prognostic value of each source",
        "",
        _md_table(summary_table(result)),
        "",
        "Hazard ratios from Cox proportional hazards (95% Wald intervals); the continuous hazard ratio is per "
        "unit of the natural log of (1 + count), i.e. per e-fold increase of 1 + count. C-index: Harrell's, a "
        f"higher count predicting an earlier event, with a {result['n_boot']}-resample patient bootstrap "
        "interval.",
        "",
        "Proportional-hazards check (Grambsch-Therneau, scaled Schoenfeld residuals against rank time), p-values:",
        "",
        _md_table(
            pd.DataFrame(
                [
                    {
                        "source": n,
                        "dichotomised": _p(r["ph_p_dichotomised"]),
                        "continuous": _p(r["ph_p_continuous"]),
                    }
                    for n, r in result["sources"].items()
                ]
            )
        ),
    ]
    if result["covariates"]:
        rows = []
        for n, r in result["sources"].items():
            for term, v in r["cox_dichotomised_terms"].items():
                rows.append(
                    {
                        "source": n,
                        "model": "dichotomised",
                        "term": term,
                        "HR (95% CI)": _ci(v["hr"], v["lo"], v["hi"]),
                        "p": _p(v["p"]),
                        "PH p": _p(v["ph_p"]),
                    }
                )
        if rows:
            lines += ["", "## Every term of the dichotomised Cox models", "", _md_table(pd.DataFrame(rows))]
    for name, c in result["comparisons"].items():
        lines += [
            "",
            f"## {name} against {result['reference']}",
            "",
            _md_table(comparison_table(c, result["cutoff"])),
            "",
            verdict(c),
        ]
    opt = [(n, r["optimal_cutoff"]) for n, r in result["sources"].items() if "optimal_cutoff" in r]
    if opt:
        lines += [
            "",
            "## Data-driven cut-off (optimistic)",
            "",
            "Chosen on these patients to maximise the log-rank statistic (each group at least 10% of patients). "
            "The naive p-value ignores the search; the adjusted one follows Lausen and Schumacher (1992). Confirm "
            "any such cut-off on other patients.",
            "",
            _md_table(
                pd.DataFrame(
                    [
                        {
                            "source": n,
                            "cut-off": "n/a" if o["cutoff"] is None else f"{o['cutoff']:g}",
                            "patients >=": o["n_high"],
                            "chi2": "n/a" if o["chi2"] is None else f"{o['chi2']:.2f}",
                            "naive p": _p(o["p_naive"]),
                            "adjusted p": _p(o["p_adjusted"]),
                        }
                        for n, o in opt
                    ]
                )
            ),
        ]
    if result["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result["notes"]]]
    lines += ["", "## Figures", ""]
    lines += [f"![{n}](km_{n}.png)" for n in result["sources"]]
    if result["comparisons"]:
        lines.append("![Bland-Altman](bland_altman.png)")
    return "\n".join(lines) + "\n"


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def analyse_survival(
    clinical: str | os.PathLike[str] | pd.DataFrame,
    counts: Mapping[str, str | os.PathLike[str] | pd.DataFrame],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    **options: Any,
) -> SurvivalResult:
    """Run :func:`survival_analysis` and write its outputs into the folder ``out``, atomically.

    ``out`` receives ``survival.json``, ``survival.md``, ``patients.csv``, ``km_<NAME>.png`` per source and,
    with two sources or more, ``bland_altman.png``. On any error nothing is written.

    Parameters
    ----------
    clinical, counts
        As for :func:`survival_analysis`.
    out
        Folder to create; an existing one is replaced only with ``overwrite``.
    overwrite
        Replace an existing ``out``.
    **options
        Keyword options of :func:`survival_analysis` (``cutoff``, ``covariates``, ``count_column``, ...).

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> n = 60
    >>> count = rng.poisson(3, n)
    >>> clinical = pd.DataFrame({"sample_id": [f"P{i}" for i in range(n)],
    ...                          "time_months": rng.exponential(30 / (1 + count)), "event": 1})
    >>> manual = pd.DataFrame({"sample_id": clinical["sample_id"], "true_ctc": count})
    >>> res = analyse_survival(clinical, {"manual": manual}, tempfile.mkdtemp() + "/out", n_boot=0)
    >>> res.result["patients"], res.result["events"], sorted(p.name for p in res.out.iterdir())
    (60, 60, ['km_manual.png', 'patients.csv', 'survival.json', 'survival.md'])
    """
    check_output_dir(out, overwrite)
    res = survival_analysis(clinical, counts, **options)
    with atomic_dir(out, overwrite) as tmp:
        (tmp / "survival.json").write_text(
            json.dumps(res.result, indent=2, default=_json_default, allow_nan=False) + "\n", encoding="utf-8"
        )
        (tmp / "survival.md").write_text(res.markdown, encoding="utf-8")
        assert res.patients is not None
        (tmp / "patients.csv").write_text(
            res.patients.to_csv(index=False, float_format="%.6g", lineterminator="\n"), encoding="utf-8"
        )
        for name, png in res.images.items():
            (tmp / name).write_bytes(png)
    res.out = Path(out)
    return res
