"""``ctcid bench thresholds``: the decision-threshold rules re-scored on finished cross-validation runs.

Every fold of a ``ctcid cv`` or ``ctcid ablate`` run keeps its calibrated validation predictions
(``val_predictions.csv``) and its held-out ones (``test_predictions.csv``). For each rule of
:data:`ctcid.evaluate.THRESHOLD_RULES` this benchmark chooses each fold's threshold on the validation cells
again, calls that fold's held-out cells at it and scores the pooled out-of-fold calls, so both rules are compared
on the same probabilities, folds and patients without training anything: the CTC-class F1 of each rule, the
paired difference of ``half-max-f1`` from ``max-f1`` (the default) with a patient bootstrap 95% interval, the
folds where each rule scores higher, and the spread of the thresholds over folds (a rule that places the
threshold between two particular validation scores moves it from fold to fold far more than the model changes).

Point it at the run folders of a real cohort to see which rule transfers better there; a folder is searched for
every set of ``fold*/`` subfolders holding both files (one per model or variant).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CtcidError

__all__ = ["bench_thresholds", "find_fold_groups", "thresholds_markdown"]

#: The rule compared and the one it is compared against (the default).
RULE, REFERENCE_RULE = "half-max-f1", "max-f1"


def find_fold_groups(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) whose ``fold*/`` subfolders hold both prediction files."""
    found = {p.parent.parent for p in root.rglob("val_predictions.csv") if p.parent.name.startswith("fold")}
    return sorted(g for g in found if any((f / "test_predictions.csv").is_file() for f in g.glob("fold*")))


def _read(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"sample_id": str})
    except (OSError, ValueError) as e:
        raise CtcidError(f"{path}: cannot read predictions ({e})") from None
    missing = {"sample_id", "label", "p_ctc"} - set(frame.columns)
    if missing:
        raise CtcidError(f"{path}: not a predictions table (no {', '.join(sorted(missing))} column)")
    return frame[frame["label"].isin(["ctc", "wbc"])]


def _score_group(group: Path, n_boot: int, seed: int) -> dict[str, Any]:
    """Each rule's thresholds, per-fold and pooled F1 on one group's folds, and the paired difference."""
    from ..evaluate import THRESHOLD_RULES, classification_metrics, decision_threshold, paired_difference

    rules = list(THRESHOLD_RULES)
    folds, tests = [], []
    calls: dict[str, list[np.ndarray]] = {r: [] for r in rules}
    for fold in sorted(group.glob("fold*")):
        if not (fold / "val_predictions.csv").is_file() or not (fold / "test_predictions.csv").is_file():
            continue
        val, test = _read(fold / "val_predictions.csv"), _read(fold / "test_predictions.csv")
        y_val, y_test = val["label"].eq("ctc").to_numpy(), test["label"].eq("ctc").to_numpy()
        row: dict[str, Any] = {"fold": fold.name, "val_ctc": int(y_val.sum()), "test_ctc": int(y_test.sum())}
        for r in rules:
            t = decision_threshold(y_val, val["p_ctc"], r)
            c = test["p_ctc"].to_numpy() >= t
            calls[r].append(c)
            row[f"threshold_{r}"] = t
            row[f"f1_{r}"] = classification_metrics(y_test, test["p_ctc"], calls=c)["f1"] if y_test.any() else None
        folds.append(row)
        tests.append(test)
    pooled = pd.concat(tests, ignore_index=True)
    y, p, ids = pooled["label"].eq("ctc").to_numpy(), pooled["p_ctc"].to_numpy(), pooled["sample_id"].to_numpy()
    side = {r: (y, p, np.concatenate(calls[r]), ids) for r in rules}
    d = paired_difference(side[RULE], side[REFERENCE_RULE], metrics=("f1",), n_boot=n_boot, seed=seed)
    per_fold = pd.DataFrame(folds)
    scored = per_fold.dropna(subset=[f"f1_{r}" for r in rules])
    gain = scored[f"f1_{RULE}"] - scored[f"f1_{REFERENCE_RULE}"]
    return {
        "folds": len(folds),
        "patients": int(d["patients"]),
        "cells": len(pooled),
        "ctc": int(y.sum()),
        "f1": {r: float(classification_metrics(y, p, calls=side[r][2])["f1"]) for r in rules},
        "f1_diff": d["f1_diff"],
        "f1_diff_lo": d["f1_diff_lo"],
        "f1_diff_hi": d["f1_diff_hi"],
        "folds_higher": int((gain > 1e-9).sum()),
        "folds_lower": int((gain < -1e-9).sum()),
        "threshold_sd": {r: float(per_fold[f"threshold_{r}"].std(ddof=1)) for r in rules},
        "per_fold": folds,
    }


def bench_thresholds(
    *,
    runs: tuple[str, ...] = (),
    n_boot: int = 1000,
    seed: int = 0,
    markdown: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Re-score every fold group under each folder of ``runs`` with each threshold rule (see the module
    docstring); return the record and, with ``markdown``, write its table there."""
    from ..evaluate import THRESHOLD_RULES
    from ..io import atomic_write_text
    from .ingest import machine_info

    say = log or (lambda _m: None)
    if not runs:
        raise CtcidError("bench thresholds needs at least one run folder (--runs)")
    t0 = time.perf_counter()
    groups: dict[str, dict[str, Any]] = {}
    for run in runs:
        root = Path(run)
        if not root.is_dir():
            raise CtcidError(f"{root}: no such run folder")
        found = find_fold_groups(root)
        if not found:
            raise CtcidError(f"{root}: no fold*/ folder with val_predictions.csv and test_predictions.csv")
        for g in found:
            name = (root / g.relative_to(root)).as_posix()  # as given, so two runs never share a name
            if name in groups:
                continue
            say(f"{name}: {len(list(g.glob('fold*')))} folds")
            groups[name] = _score_group(g, n_boot, seed)
    rules = list(THRESHOLD_RULES)
    folds = [f for g in groups.values() for f in g["per_fold"] if f[f"f1_{RULE}"] is not None]
    gain = np.array([f[f"f1_{RULE}"] - f[f"f1_{REFERENCE_RULE}"] for f in folds])
    group_gain = np.array([g["f1"][RULE] - g["f1"][REFERENCE_RULE] for g in groups.values()])
    record = {
        "benchmark": "thresholds",
        "rule": RULE,
        "reference": REFERENCE_RULE,
        "groups": groups,
        "summary": {
            "groups": len(groups),
            "groups_higher": int((group_gain > 1e-9).sum()),
            "groups_lower": int((group_gain < -1e-9).sum()),
            "mean_f1": {r: float(np.mean([g["f1"][r] for g in groups.values()])) for r in rules},
            "mean_f1_diff": float(group_gain.mean()),
            "folds": len(folds),
            "folds_higher": int((gain > 1e-9).sum()),
            "folds_lower": int((gain < -1e-9).sum()),
            "mean_fold_f1_diff": float(gain.mean()) if gain.size else float("nan"),
            "mean_threshold_sd": {
                r: float(np.nanmean([g["threshold_sd"][r] for g in groups.values()])) for r in rules
            },
        },
        "config": {"runs": [str(r) for r in runs], "n_boot": n_boot, "seed": seed},
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    }
    if markdown is not None:
        atomic_write_text(markdown, thresholds_markdown(record))
    return record


def thresholds_markdown(record: dict[str, Any]) -> str:
    """The record as a Markdown table, one row per fold group, and a summary line."""
    from ..evaluate import to_markdown

    rule, ref = record["rule"], record["reference"]
    rows = [
        {
            "run": name,
            "folds": g["folds"],
            "patients": g["patients"],
            f"F1 {ref}": f"{g['f1'][ref]:.3f}",
            f"F1 {rule}": f"{g['f1'][rule]:.3f}",
            "difference [paired 95% CI]": f"{g['f1_diff']:+.3f} [{g['f1_diff_lo']:+.3f}, {g['f1_diff_hi']:+.3f}]",
            "folds higher / lower": f"{g['folds_higher']} / {g['folds_lower']}",
            f"threshold sd {ref}": f"{g['threshold_sd'][ref]:.3f}",
            f"threshold sd {rule}": f"{g['threshold_sd'][rule]:.3f}",
        }
        for name, g in record["groups"].items()
    ]
    s = record["summary"]
    lines = [
        to_markdown(pd.DataFrame(rows)),
        "",
        f"{s['groups']} fold groups: {rule} higher in {s['groups_higher']}, lower in {s['groups_lower']}; "
        f"mean F1 {s['mean_f1'][ref]:.3f} ({ref}) and {s['mean_f1'][rule]:.3f} ({rule}). "
        f"{s['folds']} folds: higher in {s['folds_higher']}, lower in {s['folds_lower']}, mean difference "
        f"{s['mean_fold_f1_diff']:+.3f}. Mean spread of the threshold over a run's folds: "
        f"{s['mean_threshold_sd'][ref]:.3f} ({ref}), {s['mean_threshold_sd'][rule]:.3f} ({rule}).",
        "",
    ]
    return "\n".join(lines)
