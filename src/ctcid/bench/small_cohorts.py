"""``ctcid bench small-cohorts``: which model to train on a small study (tens of cells, a handful of patients).

Each cohort mirrors a small real set: 8-bit PNG crops of three fluorescence channels (RGB = CK, CD45, DAPI; no
bright field) in class folders whose files are numbered from 1 in each folder (``CTC/P01_001.png`` and
``WBC/P01_001.png``: names repeat across classes), the patient only in the file name. It is rendered by
:mod:`ctcid.synth`, written as PNGs and read back by ``ctcid ingest`` (class-folder layout, ``--sample-regex``),
so the whole path a user takes is exercised. Every model is cross-validated on the same patient-grouped folds
exactly as ``ctcid cv`` does; the out-of-fold probabilities of all seeds of one cohort size are pooled, and the
pooled ROC-AUC gets a 95% interval by resampling patients (seed x patient). Differences between models are
paired: the same resampled patients for both.

One more cohort per seed is ingested without patient ids (one folder, no ``--sample-regex``) and cross-validated
with ``--samples-unknown``, to show what cell-level splits report.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SETTINGS", "bench_small_cohorts", "pooled_auc", "small_cohort_export", "small_cohorts_markdown"]

#: Cohort sizes: (patients, cells per patient).
SETTINGS = ((4, 6), (5, 8), (6, 10))
#: Colour component of each fluorescence channel in the PNGs.
RGB = {"R": "CK", "G": "CD45", "B": "DAPI"}


def _pick_cells(table: pd.DataFrame, patients: int, cells: int, ctc_share: float, seed: int) -> pd.DataFrame:
    """``cells`` cells of each of the first ``patients`` patients holding enough CTCs, a share ``ctc_share`` of
    them CTCs."""
    rng = np.random.default_rng(seed)
    n_ctc = max(1, round(ctc_share * cells))
    chosen = []
    for _, part in table.groupby("sample_id", sort=True):
        ctc, wbc = part[part["label"] == "ctc"], part[part["label"] == "wbc"]
        if len(ctc) < n_ctc or len(wbc) < cells - n_ctc:
            continue
        chosen.append(ctc.iloc[rng.permutation(len(ctc))[:n_ctc]])
        chosen.append(wbc.iloc[rng.permutation(len(wbc))[: cells - n_ctc]])
        if len(chosen) == 2 * patients:
            break
    if len(chosen) < 2 * patients:
        raise RuntimeError("the rendered pool holds too few patients with CTCs; raise the pool")
    return pd.concat(chosen)


def small_cohort_export(
    out: str | Path,
    *,
    patients: int,
    cells_per_patient: int,
    seed: int,
    ctc_share: float = 0.4,
    size: int = 48,
    difficulty: str = "hard",
) -> Path:
    """Write a small class-folder export of 8-bit RGB PNGs (see the module docstring) into ``out`` (created).

    Each channel is scaled to 8 bits by the pool's p0.1-p99.9 window, as an instrument's export contrast would.
    """
    from PIL import Image

    from ..io import CellDataset
    from ..synth import SynthConfig
    from ..synth.dataset import synth_dataset

    out = Path(out)
    cfg = SynthConfig(
        patients=3 * patients,
        cells_per_patient=4 * cells_per_patient,
        ctc_fraction=0.5,
        difficulty=difficulty,
        seed=seed,
        size=size,
    )
    with tempfile.TemporaryDirectory(prefix="ctcid-small-pool-") as tmp:
        pool = CellDataset.open(synth_dataset(Path(tmp) / "pool", cfg))
        picked = _pick_cells(pool.table, patients, cells_per_patient, ctc_share, seed)
        windows = {
            ch: (pool.header["channel_stats"][ch]["p0.1"], pool.header["channel_stats"][ch]["p99.9"])
            for ch in RGB.values()
        }
        pixels = pool.images(picked.index.to_numpy(), list(RGB.values())).astype(np.float64)
    lo = np.array([windows[ch][0] for ch in RGB.values()])[None, :, None, None]
    hi = np.array([windows[ch][1] for ch in RGB.values()])[None, :, None, None]
    rgb = np.clip(np.rint((pixels - lo) / np.maximum(hi - lo, 1.0) * 255.0), 0, 255).astype(np.uint8)
    counters: dict[tuple[str, str], int] = {}
    for i, (sample, label) in enumerate(zip(picked["sample_id"], picked["label"], strict=True)):
        number = counters[(sample, label)] = counters.get((sample, label), 0) + 1
        path = out / label.upper() / f"{sample}_{number:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.moveaxis(rgb[i], 0, -1), "RGB").save(path)
    return out


def _configs(epochs: int, input_size: int, n_boot: int, seed: int, n_folds: int) -> dict[str, Any]:
    """The models compared, with their shared options: the logistic regression, the trees and a small CNN."""
    from ._common import cv_config

    base = cv_config(
        "features_logreg",
        RGB.values(),
        epochs,
        flatfield_channels=[],
        batch_size=16,
        input_size=input_size,
        n_folds=n_folds,
        n_boot=n_boot,
        seed=seed,
        device="cpu",
    )
    return {m: base.replace(model=m) for m in ("features_logreg", "features_gbm", "resnet18")}


def _cohort_cv(
    work: Path,
    variants: dict[str, Any],
    *,
    sample_regex: str | None,
    log: Callable[[str], None],
) -> pd.DataFrame:
    """Ingest the export in ``work`` and cross-validate ``variants`` on it; the out-of-fold predictions of every
    model side by side (``p_MODEL``), one row per held-out cell."""
    from ..io import CellDataset, IngestOptions, ingest
    from ..workflows import run_variants

    opts = IngestOptions(layout="class-folders", channel_map=dict(RGB), sample_regex=sample_regex, workers=0)
    ingest(work / "export", work / "dataset", opts, overwrite=True, log=log)
    base = next(iter(variants.values()))
    ds = CellDataset.open(work / "dataset")
    run_variants(ds, variants, work / "cv", base=base, title="small cohort", overwrite=True, log=log)
    merged = None
    for name in variants:
        oof = pd.read_csv(work / "cv" / name / "oof_predictions.csv", dtype={"sample_id": str, "cell_id": str})
        oof = oof[oof["label"].isin(["ctc", "wbc"])][["cell_id", "sample_id", "label", "p_ctc"]]
        oof = oof.rename(columns={"p_ctc": f"p_{name}"})
        merged = oof if merged is None else merged.merge(oof, on=["cell_id", "sample_id", "label"], validate="1:1")
    assert merged is not None
    return merged


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def pooled_auc(frame: pd.DataFrame, models: list[str], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Pooled ROC-AUC of each model with a 95% interval resampling ``cluster`` (patients), and each model's paired
    difference from the first one (the same resampled patients for both), with the share of resamples in which
    the first model is at least as good."""
    y = (frame["label"] == "ctc").to_numpy().astype(int)
    scores = {m: frame[f"p_{m}"].to_numpy(np.float64) for m in models}
    ids, inverse = np.unique(frame["cluster"].to_numpy(), return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(n_boot):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        if 0 < y[idx].sum() < len(idx):
            for m in models:
                draws[m].append(_auc(y[idx], scores[m][idx]))
    boot = {m: np.array(v) for m, v in draws.items()}
    first = models[0]
    out: dict[str, Any] = {"cells": len(frame), "ctc": int(y.sum()), "clusters": len(ids), "models": {}}
    for m in models:
        value = _auc(y, scores[m])
        row = {
            "roc_auc": value,
            "lo": float(np.percentile(boot[m], 2.5)),
            "hi": float(np.percentile(boot[m], 97.5)),
        }
        if m != first:
            diff = boot[first] - boot[m]
            row[f"{first}_minus"] = _auc(y, scores[first]) - value
            row[f"{first}_minus_lo"] = float(np.percentile(diff, 2.5))
            row[f"{first}_minus_hi"] = float(np.percentile(diff, 97.5))
            row[f"{first}_at_least_as_good"] = float((diff >= 0).mean())
        out["models"][m] = row
    return out


def _run_setting(
    tmp: Path, patients: int, cells: int, seeds: int, opts: dict[str, Any], say: Callable[[str], None]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every seed of one cohort size: the pooled out-of-fold predictions and each seed's ROC-AUC per model."""
    folds = max(2, min(3, patients - 2))
    frames, per_seed = [], []
    for seed in range(seeds):
        say(f"{patients} patients x {cells} cells, seed {seed}: PNG export, ingest, {folds}-fold CV of 3 models")
        work = tmp / f"{patients}x{cells}-s{seed}"
        small_cohort_export(work / "export", patients=patients, cells_per_patient=cells, seed=seed)
        variants = _configs(opts["epochs"], opts["input_size"], 200, seed, folds)
        frame = _cohort_cv(work, variants, sample_regex=r"^(P\d+)_", log=lambda _m: None)
        frame["cluster"] = f"{seed}:" + frame["sample_id"].astype(str)
        y = (frame["label"] == "ctc").to_numpy().astype(int)
        per_seed.append(
            {"patients": patients, "cells_per_patient": cells, "seed": seed, "folds": folds}
            | {m: _auc(y, frame[f"p_{m}"].to_numpy()) for m in variants}
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), per_seed


def _run_unknown(tmp: Path, patients: int, cells: int, seeds: int, say: Callable[[str], None]) -> pd.DataFrame:
    """The largest cohort without patient ids, cross-validated with ``samples_unknown`` (each cell a group)."""
    frames = []
    for seed in range(seeds):
        say(f"{patients} x {cells} cells without patient ids, seed {seed}: --samples-unknown CV of feature models")
        work = tmp / f"unknown-s{seed}"
        small_cohort_export(work / "export", patients=patients, cells_per_patient=cells, seed=seed)
        variants = {
            k: v.replace(samples_unknown=True, n_folds=5)
            for k, v in _configs(1, 48, 200, seed, 5).items()
            if k.startswith("features_")
        }
        frame = _cohort_cv(work, variants, sample_regex=None, log=lambda _m: None)
        frame["cluster"] = f"{seed}:" + frame["cell_id"].astype(str)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def bench_small_cohorts(
    *,
    settings: tuple[tuple[int, int], ...] = SETTINGS,
    seeds: int = 5,
    epochs: int = 10,
    input_size: int = 32,
    n_boot: int = 1000,
    unknown: bool = True,
    work_dir: str | Path | None = None,
    markdown: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Cross-validate the three models on ``seeds`` cohorts of each size in ``settings`` (see the module
    docstring); return the record and, with ``markdown``, write its table there."""
    from ..io import atomic_write_text
    from .ingest import machine_info

    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    results, per_seed = [], []
    opts = {"epochs": epochs, "input_size": input_size}
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-small-", dir=work_dir) as tmp:
        for patients, cells in settings:
            frame, rows = _run_setting(Path(tmp), patients, cells, seeds, opts, say)
            per_seed += rows
            pooled = pooled_auc(frame, ["features_logreg", "features_gbm", "resnet18"], n_boot=n_boot, seed=0)
            results.append({"patients": patients, "cells_per_patient": cells, "seeds": seeds, **pooled})
        no_ids = None
        if unknown:
            patients, cells = settings[-1]
            frame = _run_unknown(Path(tmp), patients, cells, seeds, say)
            no_ids = {"patients": patients, "cells_per_patient": cells, "seeds": seeds}
            no_ids |= pooled_auc(frame, ["features_logreg", "features_gbm"], n_boot=n_boot, seed=0)
    checks = {
        "logreg_at_least_as_good": all(
            r["models"]["features_logreg"]["roc_auc"] >= max(r["models"][m]["roc_auc"] for m in r["models"])
            for r in results
        )
    }
    record = {
        "benchmark": "small_cohorts",
        "settings": results,
        "per_seed": per_seed,
        "patients_unknown": no_ids,
        "checks": checks,
        "config": {
            "settings": [list(s) for s in settings],
            "seeds": seeds,
            "epochs": epochs,
            "input_size": input_size,
            "n_boot": n_boot,
            "crop_px": 48,
            "ctc_share": 0.4,
            "difficulty": "hard",
            "channels": list(RGB.values()),
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
    }
    if markdown is not None:
        atomic_write_text(markdown, small_cohorts_markdown(record))
    return record


def _ci(row: dict[str, Any], key: str = "roc_auc", sign: str = "") -> str:
    lo, hi = ("lo", "hi") if key == "roc_auc" else (f"{key}_lo", f"{key}_hi")
    return f"{row[key]:{sign}.3f} [{row[lo]:{sign}.3f}, {row[hi]:{sign}.3f}]"


def _setting_row(r: dict[str, Any], per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the Markdown table: a cohort size, each model's pooled ROC-AUC and the paired differences."""
    m = r["models"]
    size = (r["patients"], r["cells_per_patient"])
    seeds = [s for s in per_seed if (s["patients"], s["cells_per_patient"]) == size]
    best = sum(s["features_logreg"] >= max(s["features_gbm"], s["resnet18"]) for s in seeds)
    diff = "features_logreg_minus"
    return {
        "cohort": f"{size[0]} patients x {size[1]} cells",
        "folds": seeds[0]["folds"],
        "pooled cells (CTC)": f"{r['cells']} ({r['ctc']})",
        "features_logreg": _ci(m["features_logreg"]),
        "features_gbm": _ci(m["features_gbm"]),
        "resnet18": _ci(m["resnet18"]),
        "logreg - gbm": _ci(m["features_gbm"], diff, "+"),
        "logreg - resnet18": _ci(m["resnet18"], diff, "+"),
        "logreg best in seeds": f"{best}/{len(seeds)}",
    }


def small_cohorts_markdown(record: dict[str, Any]) -> str:
    """The benchmark's result as the Markdown table committed under ``benchmarks/results/``."""
    from ..evaluate import PATIENTS_UNKNOWN, to_markdown

    cfg, machine = record["config"], record["machine"]
    rows = [_setting_row(r, record["per_seed"]) for r in record["settings"]]
    text = [
        "# Small cohorts: which model learns from tens of cells",
        "",
        f"`ctcid bench small-cohorts` on {machine['cores']} cores ({machine['cpu']}), {record['seconds']:.0f} s. "
        f"Each cohort: {', '.join(cfg['channels'])} as 8-bit RGB PNG crops ({cfg['crop_px']} px, no bright field) "
        "in CTC/ and WBC/ folders with file names numbered from 1 in each folder (cell ids from paths), the "
        f"patient only in the file name (`--sample-regex`); synthetic `{cfg['difficulty']}` cells, "
        f"{cfg['ctc_share']:.0%} CTCs per patient, {cfg['seeds']} seeds per size. Patient-grouped CV as `ctcid "
        "cv` runs it (test, validation and training patients in every fold; calibration and threshold on the "
        f"validation patients); resnet18 from scratch at {cfg['input_size']} px for {cfg['epochs']} epochs.",
        "",
        "Pooled out-of-fold ROC-AUC over every seed of a size, with a 95% interval resampling patients (seed x "
        f"patient, {cfg['n_boot']} resamples); differences are paired (the same patients resampled for both "
        "models). `logreg best in seeds`: seeds whose own pooled ROC-AUC is highest for features_logreg (ties "
        "count).",
        "",
        to_markdown(pd.DataFrame(rows)),
    ]
    u = record.get("patients_unknown")
    if u:
        m = u["models"]
        text += [
            "",
            f"**{PATIENTS_UNKNOWN}.** The same {u['patients']} x {u['cells_per_patient']} cohorts ingested "
            "without patient ids (one folder, no `--sample-regex`) are refused by `ctcid cv`; with "
            "`--samples-unknown` each cell is its own group (5 folds), and the pooled ROC-AUC (interval "
            f"resampling cells) is features_logreg {_ci(m['features_logreg'])}, features_gbm "
            f"{_ci(m['features_gbm'])}. "
            "Held-out cells share patients with training cells here, which is why such numbers are marked.",
        ]
    verdict = "holds" if record["checks"]["logreg_at_least_as_good"] else "does not hold"
    target = "features_logreg's pooled ROC-AUC at least that of features_gbm and resnet18 at every size"
    return "\n".join([*text, "", f"Target ({target}): {verdict}.", ""])
