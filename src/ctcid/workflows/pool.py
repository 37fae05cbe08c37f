"""Comparisons run on different cohorts, pooled: one table over all their held-out patients.

A finished ``ctcid cv`` or ``ctcid ablate`` folder holds each variant's out-of-fold predictions, each cell called
by its own fold's model at that fold's threshold. Cohorts differ (another seed of a synthetic preset, another
site), so a claim that one variant beats another should hold on more than one; and each cohort alone may have too
few patients for its interval to exclude 0. :func:`pool_comparisons` puts the comparisons' held-out patients
together, each patient named by its cohort so that patients of different cohorts never merge, and recomputes
each variant's F1, PR-AUC and ROC-AUC with patient-resampled intervals and each variant's paired difference from
the reference variant (patients resampled once for both). Patients are resampled within their cohort (a stratified
bootstrap): each cohort's size is fixed by its design, so every resample keeps it; resampling all patients
together adds a variation of the cohorts' shares that the design does not have, and in simulation
(``benchmarks/pool_strata_coverage.py``) widens the paired interval by a quarter, to 98% coverage, when cohorts
differ in size and in gain. The per-cohort differences stay beside the pooled one,
so a gain carried by one cohort shows. Pooling refuses two comparisons of the same dataset (its fingerprint),
which would count its patients twice.

Examples
--------
>>> from ctcid.workflows.pool import pool_comparisons
>>> table = pool_comparisons(["runs/seed3/ablate", "runs/seed4/ablate"], "runs/pooled")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CtcidError
from ..io._atomic import atomic_dir, check_output_dir
from .cv import paired_to_reference

__all__ = ["POOL_FILE", "pool_comparisons"]

#: The record of a pooled table: its sources, their datasets and the resampling.
POOL_FILE = "pool.json"


def _source(path: Path) -> dict[str, Any]:
    """A finished comparison's variants (in table order), its reference, dataset fingerprint and per-variant
    table rows."""
    table_file = path / "table.csv"
    if not table_file.is_file():
        raise CtcidError(
            "is not a finished comparison (no table.csv): run `ctcid cv` or `ctcid ablate` to its end", path
        )
    try:
        table = pd.read_csv(table_file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        table = pd.DataFrame()
    if not {"variant", "pooled_f1"} <= set(table.columns) or table.empty:
        raise CtcidError("is not a comparison table (no variant and pooled_f1 columns)", table_file)
    variants = table["variant"].astype(str).tolist()
    reference = str(table["reference"].iloc[0]) if "reference" in table else variants[0]
    prints = set()
    for name in variants:
        if not (path / name / "oof_predictions.csv").is_file():
            raise CtcidError(f"variant {name!r} has no oof_predictions.csv", path / name)
        for run in sorted((path / name).glob("fold*/run.json")):
            prints.add(json.loads(run.read_text()).get("dataset_fingerprint"))
    prints.discard(None)
    if len(prints) > 1:
        raise CtcidError("its variants were trained on different datasets", path)
    return {
        "path": path,
        "variants": variants,
        "reference": reference,
        "fingerprint": prints.pop() if prints else None,
        "rows": table.set_index("variant"),
    }


def _check_sources(sources: list[dict[str, Any]]) -> None:
    first = sources[0]
    seen: dict[str, Path] = {}
    for s in sources:
        if s["variants"] != first["variants"] or s["reference"] != first["reference"]:
            raise CtcidError(
                f"has variants {', '.join(s['variants'])} (reference {s['reference']}), {first['path']} has "
                f"{', '.join(first['variants'])} (reference {first['reference']}): pool comparisons of one table",
                s["path"],
            )
        fp = s["fingerprint"]
        if fp is not None and fp in seen:
            raise CtcidError(f"compares the same dataset as {seen[fp]}: its patients would count twice", s["path"])
        if fp is not None:
            seen[fp] = s["path"]


def _pooled_predictions(sources: list[dict[str, Any]], variant: str) -> pd.DataFrame:
    """A variant's out-of-fold predictions from every cohort, each patient id prefixed by its cohort (c1, c2,
    ...)."""
    parts = []
    for i, s in enumerate(sources, start=1):
        frame = pd.read_csv(
            s["path"] / variant / "oof_predictions.csv",
            dtype={"sample_id": str, "cell_id": str},
            keep_default_na=False,
            na_values={"logit": [""], "p_ctc": [""]},
        )
        frame["sample_id"] = f"c{i}:" + frame["sample_id"]
        frame["cohort"] = f"c{i}"
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _count_row(sources: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """Per-patient count errors over every cohort's held-out patients: MAE of the called count and of the
    reported estimate, and the share of patients whose 95% interval holds the true count (NaN without truth)."""
    from ..evaluate import coverage_summary

    files = [s["path"] / variant / "counts.csv" for s in sources]
    counts = (
        pd.concat([pd.read_csv(f, dtype={"sample_id": str}) for f in files], ignore_index=True)
        if all(f.is_file() for f in files)
        else pd.DataFrame()
    )
    summary = coverage_summary(counts) if "true_ctc" in counts else {}
    return {
        "count_mae": summary.get("called_mae", float("nan")),
        "estimate_mae": summary.get("estimate_mae", float("nan")),
        "estimate_coverage": summary.get("estimate_coverage", float("nan")),
    }


def _strata(frames: dict[str, pd.DataFrame], stratify: bool) -> dict[str, str] | None:
    """Each pooled patient's cohort, or None to resample all patients together."""
    if not stratify:
        return None
    first = next(iter(frames.values()))
    return dict(zip(first["sample_id"], first["cohort"], strict=True))


def _metric_row(
    frame: pd.DataFrame, n_boot: int, seed: int, strata: dict[str, str] | None = None
) -> dict[str, Any]:
    from ..evaluate import evaluate_predictions

    lab = frame[frame["label"].isin(["ctc", "wbc"])]
    y = (lab["label"] == "ctc").astype(int).to_numpy()
    res = evaluate_predictions(
        y,
        lab["p_ctc"].to_numpy(float),
        lab["sample_id"].to_numpy(),
        calls=lab["call"].to_numpy(),
        n_boot=n_boot,
        seed=seed,
        strata=strata,
    )
    m = res["metrics"].set_index("metric")
    row: dict[str, Any] = {"patients": res["n_patients"], "ctc_patients": res["n_ctc_patients"], "cells": len(lab)}
    for name in ("f1", "pr_auc", "roc_auc"):
        row[f"pooled_{name}"] = float(m.loc[name, "value"])
        row[f"pooled_{name}_lo"], row[f"pooled_{name}_hi"] = float(m.loc[name, "lo"]), float(m.loc[name, "hi"])
    row["interval"] = res["interval"]
    return row


def _intervals(table: pd.DataFrame, col: str, signed: bool = False) -> list[str]:
    """``value [lo, hi]`` of ``col`` (and ``col_lo``, ``col_hi``) per row."""
    f = "+.3f" if signed else ".3f"
    return [
        f"{v:{f}} [{lo:{f}}, {hi:{f}}]"
        for v, lo, hi in zip(table[col], table[f"{col}_lo"], table[f"{col}_hi"], strict=True)
    ]


def _markdown(
    table: pd.DataFrame, sources: list[dict[str, Any]], n_boot: int, seed: int, stratify: bool = True
) -> str:
    from ..evaluate import to_markdown

    ref = table["reference"].iloc[0]
    is_ref = (table["variant"] == ref).to_numpy()
    marks = [" *" if x else "" for x in table["f1_diff_excludes_0"]]
    shown: dict[str, Any] = {
        "variant": table["variant"],
        "F1 [95% CI]": _intervals(table, "pooled_f1"),
        "PR-AUC": table["pooled_pr_auc"].round(3),
        f"F1 - {ref} [95% CI]": [
            "" if r else d + m for r, d, m in zip(is_ref, _intervals(table, "f1_diff", True), marks, strict=True)
        ],
        f"PR-AUC - {ref} [95% CI]": [
            "" if r else d for r, d in zip(is_ref, _intervals(table, "pr_auc_diff", True), strict=True)
        ],
    }
    shown["count MAE called / estimate"] = [
        f"{a:.2f} / {b:.2f}" for a, b in zip(table["count_mae"], table["estimate_mae"], strict=True)
    ]
    shown["count 95% interval coverage"] = ["" if pd.isna(c) else f"{c:.0%}" for c in table["estimate_coverage"]]
    for i in range(1, len(sources) + 1):
        shown[f"F1 - {ref}, c{i}"] = [
            "" if r or pd.isna(d) else f"{d:+.3f}" for r, d in zip(is_ref, table[f"c{i}_f1_diff"], strict=True)
        ]
    lines = "\n".join(
        f"- c{i}: `{s['path']}`" + (f" (dataset `{s['fingerprint'][:19]}`)" if s["fingerprint"] else "")
        for i, s in enumerate(sources, start=1)
    )
    interval = (
        ("intervals resample patients within each cohort" if stratify else "intervals resample patients")
        if (table["interval"] == "patients").all()
        else "too few patients to resample them, so intervals resample cells within patients and are optimistic"
    )
    return (
        f"# {len(sources)} comparisons pooled\n\n{lines}\n\nEvery held-out patient of every cohort "
        f"({int(table['patients'].iloc[0])} patients), each cell called by its own fold's model at that fold's "
        f"threshold; {interval} ({n_boot} resamples, seed {seed}). `F1 - {ref}`: the difference of pooled F1 from "
        "the reference on the same patients, with a paired interval (patients resampled once for both); * marks "
        "intervals that exclude 0. Counts per held-out patient (each cohort's `VARIANT/counts.csv`): mean "
        "absolute error of the called count and of the reported estimate, and the share of patients whose 95% "
        "interval holds the true count. The last columns repeat each cohort's own F1 difference, from its "
        "`table.csv`.\n\n" + to_markdown(pd.DataFrame(shown)) + "\n"
    )


def pool_comparisons(
    comparisons: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    stratify: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Pool finished ``cv``/``ablate`` folders run on different cohorts (see the module docstring) into ``out``:
    ``table.csv`` (one row per variant: patients, pooled F1/PR-AUC/ROC-AUC with intervals, count errors and
    interval coverage over all patients, the paired differences from the reference and each cohort's own F1
    difference), ``table.md`` and :data:`POOL_FILE`. ``stratify`` resamples patients within their cohort (the
    default); without it all patients are resampled together."""
    from .._version import __version__

    if len(comparisons) < 2:
        raise CtcidError("pooling needs at least two comparisons")
    check_output_dir(out, overwrite)  # before any work
    say = log or (lambda _m: None)
    sources = [_source(Path(c)) for c in comparisons]
    _check_sources(sources)
    variants = sources[0]["variants"]
    say(f"pooling {len(variants)} variants over {len(sources)} cohorts")
    frames = {v: _pooled_predictions(sources, v) for v in variants}
    strata = _strata(frames, stratify)
    paired = paired_to_reference(frames, n_boot=n_boot, seed=seed, strata=strata)
    rows = []
    for v in variants:
        row = {
            "variant": v,
            "cohorts": len(sources),
            **_metric_row(frames[v], n_boot, seed, strata),
            **_count_row(sources, v),
            **paired[v],
        }
        for i, s in enumerate(sources, start=1):
            rows_i = s["rows"]
            row[f"c{i}_f1"] = float(rows_i.loc[v, "pooled_f1"])
            row[f"c{i}_f1_diff"] = float(rows_i.loc[v, "f1_diff"]) if "f1_diff" in rows_i else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    record = {
        "sources": [
            {"cohort": f"c{i}", "path": str(s["path"]), "dataset_fingerprint": s["fingerprint"]}
            for i, s in enumerate(sources, start=1)
        ],
        "variants": variants,
        "reference": sources[0]["reference"],
        "n_boot": n_boot,
        "seed": seed,
        "resampling": "patients within each cohort" if stratify else "patients of all cohorts together",
        "ctcid": __version__,
    }
    with atomic_dir(out, overwrite) as tmp:
        table.to_csv(tmp / "table.csv", index=False)
        (tmp / "table.md").write_text(_markdown(table, sources, n_boot, seed, stratify))
        (tmp / POOL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return table
