"""``ctcid bench active-learning``: how many labels the review queue saves against labelling at random.

A reviewer is simulated with the synthetic cohort's ground truth (``label_true``). Patients are split into a
pool the reviewer labels and held-out test patients. From a small random start set, each round the reviewer
labels the next cells of a strategy, a model is retrained on every label so far, and its F1 on the held-out
patients is recorded against the number of labels:

``mixed``
    the app's queue (:func:`ctcid.review.queue.queue_orders`): nearest the threshold, called CTCs, and a random
    share of cells called leukocyte, in the shares of :data:`ctcid.review.queue.MIX`;
``random``
    cells drawn at random from the pool;
``uncertainty`` (optional)
    the undecided queue alone.

The model is ctcid's ``features_gbm`` (the same scikit-learn gradient boosting on the same hand-crafted feature
table, with the same defaults), retrained from scratch each round; its threshold maximises F1 over patient-
grouped 3-fold out-of-fold predictions of the labelled cells (what a retrained model can know), then the model
is fitted on all of them. The reference is the same procedure on every pool label. A strategy *reaches* it at
the first round whose F1, averaged over seeds, is within ``tolerance`` of the reference's average.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import CellDataset, DatasetWriter, atomic_write_bytes, atomic_write_text
from .queue import queue_orders

__all__ = [
    "STRATEGIES",
    "label_schedule",
    "plot_active_learning",
    "simulate_active_learning",
    "write_active_learning",
]

STRATEGIES = ("mixed", "random", "uncertainty")


def label_schedule(start: int, pool: int, growth: float = 1.3, min_step: int = 20) -> list[int]:
    """Labels after each round: ``start``, then ``x growth`` (at least ``min_step`` more), ending with the pool.

    Examples
    --------
    >>> label_schedule(40, 200)
    [40, 60, 80, 104, 135, 176, 200]
    """
    out = [min(start, pool)]
    while out[-1] < pool:
        out.append(min(pool, max(out[-1] + min_step, round(out[-1] * growth))))
    return out


def _gbm(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ..train.config import GBMConfig

    return HistGradientBoostingClassifier(**GBMConfig().to_dict(), early_stopping=False, random_state=seed)


def _fit(X: np.ndarray, y: np.ndarray, groups: np.ndarray, cells: np.ndarray, seed: int) -> tuple[Any, float]:
    """Model on ``cells`` and its threshold from patient-grouped 3-fold out-of-fold predictions."""
    from sklearn.model_selection import GroupKFold

    from ..evaluate import threshold_max_f1

    yl = y[cells]
    oof = np.full(len(cells), float(yl.mean()))
    n_groups = np.unique(groups[cells]).size
    if n_groups >= 2:
        for tr, va in GroupKFold(n_splits=min(3, n_groups)).split(cells, yl, groups[cells]):
            if yl[tr].min() != yl[tr].max():
                oof[va] = _gbm(seed).fit(X[cells[tr]], yl[tr]).predict_proba(X[cells[va]])[:, 1]
    threshold = threshold_max_f1(yl, oof) if yl.any() else 0.5
    model = _gbm(seed).fit(X[cells], yl) if yl.min() != yl.max() else None
    return model, float(threshold)


def _proba(model: Any, X: np.ndarray, prior: float) -> np.ndarray:
    return np.full(len(X), prior) if model is None else model.predict_proba(X)[:, 1]


def _f1(y: np.ndarray, called: np.ndarray) -> float:
    tp = float((called & (y == 1)).sum())
    denom = float(called.sum() + (y == 1).sum())
    return 2 * tp / denom if denom else 0.0


def _cohort(
    folder: Path,
    patients: int,
    cells_per_patient: int,
    ctc_fraction: float,
    difficulty: str,
    size: int,
    seed: int,
    channels: list[str],
    workers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Render a synthetic cohort into a dataset holding ``channels`` and compute its feature table."""
    from ..data import feature_matrix
    from ..synth import CHANNELS, SynthConfig
    from ..synth.cohort import render_cells, sample_cells
    from ..train import TrainConfig

    cfg = SynthConfig(
        patients=patients,
        cells_per_patient=cells_per_patient,
        ctc_fraction=ctc_fraction,
        difficulty=difficulty,
        size=size,
        seed=seed,
    )
    pat, table = sample_cells(cfg)
    images, _ = render_cells(table, pat, size=size, pixel_size_um=cfg.pixel_size_um, seed=seed)
    keep = [list(CHANNELS).index(c) for c in channels]
    folder.mkdir(parents=True)
    writer = DatasetWriter(folder, channels, size, cfg.pixel_size_um)
    rows = table[["cell_id", "sample_id", "label"]].assign(qc_flags="").reset_index(drop=True)
    writer.append(np.ascontiguousarray(images[:, keep]), rows)
    writer.finish({"source": {"root": "generated", "layout": "bench", "detected": False}, "rejected": 0})
    ds = CellDataset.open(folder)
    tcfg = TrainConfig(model="features_gbm", channels=channels)
    X, names = feature_matrix(ds, tcfg.segmentation, tcfg.features, channels=channels, workers=workers)
    truth = table["label_true"] if "label_true" in table else table["label"]
    return X.astype(np.float64), (truth == "ctc").to_numpy().astype(np.int64), table["sample_id"].to_numpy(), names


def _split(groups: np.ndarray, y: np.ndarray, seed: int, test_patients: int, start: int) -> tuple:
    """Held-out test cells, the pool, and the pool in the order the start set is drawn (>= 3 CTCs first)."""
    rng = np.random.default_rng(seed)
    test = np.isin(groups, rng.permutation(np.unique(groups))[:test_patients])
    pool = np.flatnonzero(~test)
    first = rng.permutation(pool)
    while y[first[:start]].sum() < 3:
        first = rng.permutation(pool)
    return test, pool, first


def _simulate(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    strategy: str,
    test_patients: int,
    start: int,
    growth: float,
    min_step: int,
) -> list[dict[str, Any]]:
    """One seed of one strategy (``all``: the reference on every pool label); single-threaded."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        test, pool, first = _split(groups, y, seed, test_patients, start)
        if strategy == "all":
            model, thr = _fit(X, y, groups, pool, seed)
            f1 = _f1(y[test], _proba(model, X[test], y[pool].mean()) >= thr)
            return [{"strategy": "all", "seed": seed, "round": 0, "labels": len(pool), "f1": f1}]
        schedule = label_schedule(start, len(pool), growth, min_step)
        labelled = np.zeros(len(y), bool)
        labelled[first[: schedule[0]]] = True
        draw = np.random.default_rng([seed, STRATEGIES.index(strategy)])
        rows = []
        for rnd, n in enumerate(schedule):
            cells = np.flatnonzero(labelled)
            model, thr = _fit(X, y, groups, cells, seed)
            prior = float(y[cells].mean())
            f1 = _f1(y[test], _proba(model, X[test], prior) >= thr)
            rows.append({"strategy": strategy, "seed": seed, "round": rnd, "labels": int(n), "f1": f1})
            if rnd + 1 == len(schedule):
                break
            k = schedule[rnd + 1] - n
            free = pool[~labelled[pool]]
            if strategy == "random":
                pick = draw.choice(free, k, replace=False)
            else:
                order = queue_orders(_proba(model, X[free], prior), thr, seed=int(draw.integers(2**31)))
                pick = free[order["mixed" if strategy == "mixed" else "undecided"][:k]]
            labelled[pick] = True
        return rows


def _run_all(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seeds: tuple[int, ...],
    strategies: tuple[str, ...],
    args: tuple[int, int, float, int],
    workers: int,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every (seed, strategy) simulation and each seed's all-labels reference, on ``workers`` processes."""
    from .._workers import process_pool

    tasks = [(seed, s) for seed in seeds for s in ("all", *strategies)]
    say(f"{len(tasks)} simulations (seeds x strategies, and the all-labels references) on {workers} process(es)")
    if workers == 1:
        return [row for seed, s in tasks for row in _simulate(X, y, groups, seed, s, *args)]
    rows: list[dict[str, Any]] = []
    with process_pool(min(workers, len(tasks))) as pool:
        futures = [pool.submit(_simulate, X, y, groups, seed, s, *args) for seed, s in tasks]
        for (seed, s), fut in zip(tasks, futures, strict=True):
            got = fut.result()
            rows += got
            say(
                f"seed {seed}, {s}: F1 {got[0]['f1']:.3f} at {got[0]['labels']} labels -> "
                f"{got[-1]['f1']:.3f} at {got[-1]['labels']}"
            )
    return rows


def _first_reach(frame: pd.DataFrame, target: float) -> int | None:
    hit = frame[frame["f1"] >= target]
    return int(hit["labels"].iloc[0]) if len(hit) else None


def _summarise(
    per_seed: pd.DataFrame, seeds: tuple[int, ...], strategies: tuple[str, ...], tolerance: float
) -> dict[str, Any]:
    """The mean curve, the all-labels F1 and the labels each strategy needs to come within ``tolerance``."""
    reference = per_seed[per_seed["strategy"] == "all"]["f1"].to_numpy()
    runs = per_seed[per_seed["strategy"] != "all"]
    curve = (
        runs.groupby(["strategy", "round"], sort=False)
        .agg(labels=("labels", "first"), f1=("f1", "mean"), f1_sd=("f1", "std"))
        .reset_index()
    )
    curve["f1"] = curve["f1"].round(4)
    curve["f1_sd"] = curve["f1_sd"].fillna(0.0).round(4)
    f1_all = float(np.mean(reference))
    reach = {s: _first_reach(curve[curve["strategy"] == s], f1_all - tolerance) for s in strategies}
    paired = {  # each seed against its own all-labels F1 (the same held-out patients)
        s: [
            _first_reach(runs[(runs["strategy"] == s) & (runs["seed"] == seed)], ref - tolerance)
            for seed, ref in zip(seeds, reference, strict=True)
        ]
        for s in strategies
    }
    result: dict[str, Any] = {
        "benchmark": "active_learning",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "f1_all_labels": round(f1_all, 4),
        "f1_all_labels_per_seed": [round(float(v), 4) for v in reference],
        "tolerance": tolerance,
        "labels_to_reach": reach,
        "labels_to_reach_per_seed": paired,
    }
    if "random" in reach and "mixed" in reach:
        a, b = reach["mixed"], reach["random"]
        result["labels_ratio_mixed_vs_random"] = round(a / b, 3) if a and b else None
        result["target"] = "mixed reaches the all-labels F1 with at most half the labels random needs"
        result["meets_target"] = bool(a is not None and (b is None or a <= 0.5 * b))
    result["curve"] = curve
    result["pools"] = [int(v) for v in per_seed[per_seed["strategy"] == "all"]["labels"]]
    return result


def simulate_active_learning(
    *,
    patients: int = 24,
    cells_per_patient: int = 300,
    test_patients: int = 8,
    ctc_fraction: float = 0.1,
    difficulty: str = "medium",
    size: int = 64,
    channels: tuple[str, ...] = ("BF",),
    start: int = 40,
    growth: float = 1.5,
    min_step: int = 20,
    strategies: tuple[str, ...] = ("mixed", "random"),
    seeds: tuple[int, ...] = (0, 1, 2),
    tolerance: float = 0.01,
    workers: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Simulate review rounds on a synthetic cohort (see the module doc).

    Parameters
    ----------
    patients, cells_per_patient, ctc_fraction, difficulty, size
        The synthetic cohort (rendered once; the seeds change the split, the start set and the random draws).
    test_patients
        Patients held out for the F1 (drawn anew for each seed).
    channels
        Channels of the feature table (default bright field only, where labels matter; with all four
        fluorescence channels a few dozen labels already give F1 near 1).
    start, growth, min_step
        The label schedule (:func:`label_schedule`); the start set is random with at least 3 CTCs.
    strategies
        From :data:`STRATEGIES`.
    seeds
        One simulation per seed; the curve is their mean.
    tolerance
        How close to the all-labels F1 counts as reaching it.
    workers
        Processes (0: all cores) for the features and for the simulations (one seed and strategy each, one
        thread each).

    Returns
    -------
    result, curve
        ``result`` holds ``f1_all_labels``, ``labels_to_reach`` (per strategy, ``None`` when never) and the
        settings; ``curve`` has ``strategy``, ``round``, ``labels``, ``f1`` (mean over seeds), ``f1_sd``.
    """
    from .._workers import usable_cores
    from ..errors import CtcidError

    say = log or (lambda _m: None)
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise CtcidError(f"strategies must be among {', '.join(STRATEGIES)}; got {', '.join(bad) or 'none'}")
    if not 1 <= test_patients < patients - 1:
        raise CtcidError("test patients must leave at least 2 patients to label")
    workers = workers or usable_cores()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ctcid-al-") as tmp:
        say(f"rendering {patients} x {cells_per_patient} cells and their {'+'.join(channels)} features ...")
        X, y, groups, names = _cohort(
            Path(tmp) / "ds",
            patients,
            cells_per_patient,
            ctc_fraction,
            difficulty,
            size,
            0,
            list(channels),
            workers,
        )
    t_data = time.perf_counter() - t0
    rows = _run_all(X, y, groups, seeds, strategies, (test_patients, start, growth, min_step), workers, say)
    result = _summarise(pd.DataFrame(rows), seeds, strategies, tolerance)
    curve, pools = result.pop("curve"), result.pop("pools")
    result["settings"] = {
        "cohort": {
            "patients": patients,
            "cells_per_patient": cells_per_patient,
            "cells": len(y),
            "ctc": int(y.sum()),
            "ctc_fraction": ctc_fraction,
            "difficulty": difficulty,
            "crop_px": size,
            "channels": list(channels),
            "features": len(names),
        },
        "test_patients": test_patients,
        "pool_cells_per_seed": pools,
        "schedule": {"start": start, "growth": growth, "min_step": min_step},
        "model": "features_gbm (HistGradientBoostingClassifier, ctcid defaults), threshold from 3-fold "
        "patient-grouped out-of-fold F1 over the labelled cells",
        "seeds": list(seeds),
        "strategies": list(strategies),
    }
    result["seconds"] = {"data": round(t_data, 1), "total": round(time.perf_counter() - t0, 1)}
    return result, curve


def plot_active_learning(result: dict[str, Any], curve: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """F1 on held-out patients against labels, one line per strategy (mean ± sd over seeds)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = {"mixed": "#b00020", "random": "#1a5fb4", "uncertainty": "#8a5a00"}
    for strategy, c in curve.groupby("strategy", sort=False):
        ax.plot(c["labels"], c["f1"], marker="o", ms=3, label=strategy, color=colours.get(str(strategy)))
        ax.fill_between(
            c["labels"], c["f1"] - c["f1_sd"], c["f1"] + c["f1_sd"], alpha=0.15, color=colours.get(str(strategy))
        )
        hit = result["labels_to_reach"].get(strategy)
        if hit:
            ax.axvline(hit, ls=":", lw=1, color=colours.get(str(strategy)))
    f1_all, tol = result["f1_all_labels"], result["tolerance"]
    ax.axhline(f1_all, color="k", lw=1, label=f"all pool labels ({f1_all:.3f})")
    ax.axhline(f1_all - tol, color="k", lw=0.8, ls="--", label=f"reached: within {tol:g}")
    ax.set_xscale("log")
    ax.set_xlabel("labelled cells")
    ax.set_ylabel("F1 (CTC) on held-out patients")
    ax.set_title("Active learning: the review queue against random labelling")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())


def write_active_learning(result: dict[str, Any], curve: pd.DataFrame, out_json: str | os.PathLike[str]) -> Path:
    """Write ``NAME.json``, the curve ``NAME.csv`` (strategy, round, labels, f1, f1_sd) and ``NAME.png``."""
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".csv"), curve.to_csv(index=False))
    plot_active_learning(result, curve, out.with_suffix(".png"))
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return out
