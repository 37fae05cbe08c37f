"""``ctcid bench counts``: do the per-patient count intervals hold? Coverage, width, error and bias of each
estimator on held-out patients of synthetic cohorts with known truth.

For each preset a cohort is rendered (CTC prevalence varying between patients from 0 to about 30%, a quarter of
them without any), a model is trained in patient-grouped cross-validation exactly as ``ctcid cv`` does
(calibration and error rates from each fold's validation patients), and every patient is counted once, out of
fold, by the model that never saw them. With several seeds each renders its own cohort and trains its own
folds, and the patients of all are pooled; ``by_seed`` keeps each seed's coverage and error. The record's
``default`` is the estimator this benchmark finds closest to 95% coverage within [0.90, 0.98] on every preset,
ties broken by mean absolute error; it is the library's :data:`ctcid.evaluate.DEFAULT_COUNT_METHOD`, which a
model reports when its error rates come from enough validation patients
(:func:`ctcid.evaluate.default_count_method`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CtcidError

__all__ = ["COVERAGE_TARGET", "ECE_TARGET", "bench_counts", "choose_default"]

#: Coverage the default estimator's 95% intervals must reach on every preset.
COVERAGE_TARGET = (0.90, 0.98)
#: Largest expected calibration error of the pooled out-of-fold probabilities.
ECE_TARGET = 0.05
ESTIMATORS = ("called", "expected", "adjusted")


def choose_default(presets: dict[str, dict[str, dict[str, float]]]) -> str | None:
    """The estimator whose coverage is within :data:`COVERAGE_TARGET` on every preset and closest to 0.95 (mean
    distance over presets), ties broken by mean MAE; ``None`` when no estimator qualifies.

    >>> r = {"easy": {"expected": {"coverage": 0.93, "mae": 1.0}, "adjusted": {"coverage": 0.96, "mae": 2.0}}}
    >>> choose_default(r)
    'adjusted'
    """
    scored = []
    for name in ("expected", "adjusted"):
        cov = [res[name]["coverage"] for res in presets.values()]
        if any(c is None or not COVERAGE_TARGET[0] <= c <= COVERAGE_TARGET[1] for c in cov):
            continue
        mae = sum(res[name]["mae"] for res in presets.values()) / len(presets)
        scored.append((round(sum(abs(c - 0.95) for c in cov) / len(cov), 3), mae, name))
    return min(scored)[2] if scored else None


def _preset_result(counts: pd.DataFrame, cells: pd.DataFrame) -> dict[str, Any]:
    """One preset's record from its out-of-fold count table (one row per patient) and per-cell predictions
    (``label``, ``p_ctc``, ``call``), pooled over every seed's cohort.

    >>> counts = pd.DataFrame({"cells": [3, 3], "true_ctc": [1, 0], "called_ctc": [1, 1],
    ...     "expected_ctc": [1.0, 0.5], "expected_ctc_lo": [0, 0], "expected_ctc_hi": [2, 1],
    ...     "adjusted_ctc": [1.0, 0.0], "adjusted_ctc_lo": [1, 0], "adjusted_ctc_hi": [1, 1]})
    >>> cells = pd.DataFrame({"label": ["ctc", "wbc", "wbc"] * 2, "p_ctc": [0.9, 0.1, 0.1, 0.1, 0.6, 0.1],
    ...     "call": ["ctc", "wbc", "wbc", "wbc", "ctc", "wbc"]})
    >>> r = _preset_result(counts, cells)
    >>> r["called"]["mae"], r["adjusted"]["coverage"], r["adjusted"]["patients"], round(r["f1"], 3)
    (0.5, 1.0, 2, 0.5)
    """
    from ..evaluate import classification_metrics, coverage_summary

    s = coverage_summary(counts)
    out: dict[str, Any] = {}
    for name in ESTIMATORS:
        out[name] = {
            "coverage": None if name == "called" else s[f"{name}_coverage"],
            "width": None if name == "called" else s[f"{name}_width"],
            "mae": s[f"{name}_mae"],
            "bias": s[f"{name}_bias"],
            "patients": int(s[f"{name}_patients"]),  # with a known truth and a finite estimate
        }
    # pooled out-of-fold cells, each called at its own fold's threshold
    pooled = classification_metrics(cells["label"].eq("ctc"), cells["p_ctc"], calls=cells["call"])
    out["ece"], out["f1"] = pooled["ece"], pooled["f1"]
    out["ctc_patients"] = int((counts["true_ctc"] > 0).sum())
    out["max_prevalence"] = float((counts["true_ctc"] / counts["cells"]).max())
    return out


def _out_of_fold(
    where: Path, synth: Any, cfg: Any, say: Callable[[str], None]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render the cohort ``synth`` and cross-validate ``cfg`` on it as ``ctcid cv`` does, in ``where``: the
    out-of-fold count table (one row per patient) and per-cell predictions."""
    from ..io import CellDataset
    from ..synth.dataset import synth_dataset
    from ..workflows import run_variants

    label = f"{synth.difficulty}, seed {synth.seed}"
    say(f"{label}: rendering {synth.patients} patients x {synth.cells_per_patient} cells")
    ds = CellDataset.open(synth_dataset(where / "ds", synth))
    say(f"{label}: {cfg.n_folds}-fold patient-grouped CV of {cfg.model} on {', '.join(cfg.channels)}")
    run_variants(ds, {cfg.model: replace(cfg)}, where / "cv", base=cfg, title=synth.difficulty, log=say)
    table = pd.read_csv(where / "cv" / cfg.model / "counts.csv", dtype={"sample_id": str})
    cells = pd.read_csv(where / "cv" / cfg.model / "oof_predictions.csv", usecols=["label", "p_ctc", "call"])
    return table, cells


def bench_counts(
    *,
    presets: tuple[str, ...] = ("easy", "medium", "hard"),
    patients: int = 64,
    cells_per_patient: int = 60,
    ctc_fraction: float = 0.1,
    folds: int = 4,
    model: str = "resnet18",
    channels: tuple[str, ...] = ("BF", "DAPI", "CK", "CD45"),
    epochs: int = 5,
    input_size: int = 64,
    batch_size: int = 64,
    seeds: tuple[int, ...] = (0,),
    threshold_rule: str = "max-f1",
    work_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and count every preset, once per seed (each seed its own cohort and folds, pooled); return the
    benchmark record (see the module docstring for the layout)."""
    from ..evaluate import THRESHOLD_RULES
    from ..synth import SynthConfig
    from ._common import cv_config
    from .ingest import machine_info

    say = log or (lambda _m: None)
    if not seeds:
        raise CtcidError("bench counts needs at least one seed")
    if threshold_rule not in THRESHOLD_RULES:
        raise CtcidError(f"--threshold-rule: one of {', '.join(THRESHOLD_RULES)}, got {threshold_rule!r}")
    sizes = {"batch_size": batch_size, "input_size": input_size}
    fixed = {"n_folds": folds, "n_boot": 200, "threshold_rule": threshold_rule}
    cohort = SynthConfig(
        patients=patients, cells_per_patient=cells_per_patient, ctc_fraction=ctc_fraction, size=80
    )
    results: dict[str, dict[str, Any]] = {}
    by_seed: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-counts-", dir=work_dir) as tmp:
        for preset in presets:
            tables, cells = [], []
            for seed in seeds:
                cfg = cv_config(model, channels, epochs, **sizes, **fixed, seed=seed)
                synth = replace(cohort, seed=seed, difficulty=preset)
                table, oof = _out_of_fold(Path(tmp) / f"{preset}-{seed}", synth, cfg, say)
                tables.append(table.assign(sample_id=f"{seed}:" + table["sample_id"]))
                cells.append(oof)
                one = _preset_result(table, oof)
                by_seed.setdefault(str(seed), {})[preset] = {
                    name: {k: one[name][k] for k in ("coverage", "mae", "patients")} for name in ESTIMATORS
                }
            results[preset] = _preset_result(pd.concat(tables), pd.concat(cells))
    default = choose_default({k: {e: v[e] for e in ("expected", "adjusted")} for k, v in results.items()})
    estimators = {name: {"presets": {preset: results[preset][name] for preset in presets}} for name in ESTIMATORS}
    checks = {
        "coverage_target": list(COVERAGE_TARGET),
        "ece_target": ECE_TARGET,
        "ece_ok": all(results[p]["ece"] <= ECE_TARGET for p in presets),
        "default_mae_not_worse_than_called": None
        if default is None
        else all(results[p][default]["mae"] <= results[p]["called"]["mae"] for p in presets),
    }
    return {
        "benchmark": "counts",
        "default": default,
        "estimators": estimators,
        "ece": {p: results[p]["ece"] for p in presets},
        "f1": {p: results[p]["f1"] for p in presets},
        "checks": checks,
        "config": {
            "presets": list(presets),
            "patients": patients,
            "cells_per_patient": cells_per_patient,
            "ctc_fraction": ctc_fraction,
            "folds": folds,
            "model": model,
            "channels": list(channels),
            "epochs": epochs,
            "input_size": input_size,
            "batch_size": batch_size,
            "seeds": list(seeds),
            "threshold_rule": threshold_rule,
        },
        "by_seed": by_seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    }
