"""Patient-grouped cross-validation of several variants (architectures, or System A's ablation) on one split.

Every variant is trained on the same folds; each fold is a complete run folder (see
:mod:`ctcid.train.engine`). Per-fold test metrics give the mean and spread over folds; the
pooled out-of-fold predictions give patient-bootstrap intervals.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CtcidError
from ..evaluate.metrics import METRICS
from ..io import CellDataset
from ..io._atomic import atomic_write_text
from .config import TrainConfig
from .engine import RUN_FILE, fit

__all__ = [
    "SYSTEM_A_VARIANTS",
    "SYSTEM_B_VARIANTS",
    "CVResult",
    "run_variants",
    "system_a_variants",
    "system_b_variants",
]

#: Metrics shown in the comparison tables, in order (the rates, not the confusion counts).
TABLE_METRICS = METRICS[: METRICS.index("pr_auc") + 1]
_NO_AUG = {"geometric": False, "illumination": False, "noise": False}

#: System A's table: bright field only, each augmentation family alone, all three, and DAPI added to training.
SYSTEM_A_VARIANTS: dict[str, dict[str, Any]] = {
    "bf": {"augment": dict(_NO_AUG)},
    "bf+geometric": {"augment": {**_NO_AUG, "geometric": True}},
    "bf+illumination": {"augment": {**_NO_AUG, "illumination": True}},
    "bf+noise": {"augment": {**_NO_AUG, "noise": True}},
    "bf+aug": {"augment": {}},
    "bf+aug+dapi": {"augment": {}, "train_extra_channels": ["DAPI"]},
}


def system_a_variants(base: TrainConfig) -> dict[str, TrainConfig]:
    """System A's ablation as configs: BF input only, the user's augmentation parameters, families switched."""
    out = {}
    for name, change in SYSTEM_A_VARIANTS.items():
        aug = {**base.augment, **change["augment"]}
        out[name] = replace(
            base, channels=["BF"], augment=aug, train_extra_channels=list(change.get("train_extra_channels", []))
        )
    return out


#: System B's table: the image branch alone, the feature branch alone (trees and MLP), and both fused.
SYSTEM_B_VARIANTS: dict[str, dict[str, Any]] = {
    "image_cnn": {},
    "features_gbm": {"model": "features_gbm"},
    "features_mlp": {"model": "features_mlp"},
    "dual_concat": {"model": "dual_branch", "fusion": "concat"},
    "dual_gated": {"model": "dual_branch", "fusion": "gated"},
}


def system_b_variants(base: TrainConfig) -> dict[str, TrainConfig]:
    """System B's ablation as configs on the user's channels; the image-only CNN is the dual branch's backbone."""
    out = {}
    for name, change in SYSTEM_B_VARIANTS.items():
        model = change.get("model", base.backbone)
        out[name] = replace(base, model=model, fusion=change.get("fusion", base.fusion), train_extra_channels=[])
    return out


@dataclass
class CVResult:
    out: Path
    per_fold: pd.DataFrame
    table: pd.DataFrame


def _pooled(frames: list[pd.DataFrame], runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Out-of-fold predictions; each fold's logits rescaled so its own threshold sits at p = 0.5."""
    parts = []
    for frame, run in zip(frames, runs, strict=True):
        t, temp = float(run["threshold"]), float(run["temperature"])
        t = min(max(t, 1e-6), 1 - 1e-6)
        f = frame.copy()
        f["logit"] = f["logit"] / temp - np.log(t / (1 - t))
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


def _fmt(mean: float, std: float) -> str:
    return "nan" if mean != mean else f"{mean:.3f} ± {std:.3f}"


def run_variants(
    ds: CellDataset,
    variants: dict[str, TrainConfig],
    out: str | os.PathLike[str],
    *,
    base: TrainConfig,
    title: str,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> CVResult:
    """Train every variant on the same patient-grouped folds and write one comparison table.

    Writes ``folds.csv``, ``config.yaml``, ``VARIANT/foldK/`` run folders, ``per_fold.csv``,
    ``table.csv`` and ``table.md`` (mean ± std over folds; pooled F1 with a patient-bootstrap 95%
    interval) and ``comparison.png``.
    """
    import shutil

    import yaml

    from ..evaluate import fold_table, patient_folds, plot_model_comparison, summarise_folds, to_markdown
    from .engine import write_metrics

    say = log or (lambda _m: None)
    out = Path(out)
    if out.exists() and not resume:
        if not overwrite:
            raise CtcidError("already exists; pass --resume to finish it or --overwrite to start again", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    sample_ids = ds.table["sample_id"].to_numpy()
    splits = patient_folds(
        sample_ids, ds.labels(), n_folds=base.n_folds, seed=base.seed, val_fraction=base.val_fraction
    )
    atomic_write_text(out / "folds.csv", fold_table(sample_ids, splits, labels=ds.labels()).to_csv(index=False))
    atomic_write_text(
        out / "config.yaml",
        yaml.safe_dump(
            {"train": base.to_dict(), "variants": {k: v.to_dict() for k, v in variants.items()}}, sort_keys=False
        ),
    )
    rows, pooled_rows = [], []
    for name, cfg in variants.items():
        frames, runs = [], []
        for split in splits:
            run_dir = out / name / f"fold{split.fold}"
            done = (run_dir / RUN_FILE).is_file() and json.loads((run_dir / RUN_FILE).read_text())[
                "status"
            ] == "complete"
            if done:
                say(f"{name} fold {split.fold}: already complete")
            else:
                say(
                    f"{name} fold {split.fold + 1}/{len(splits)}: training {cfg.model} on {len(split.train)} cells"
                )
                fit(ds, split, cfg, run_dir, resume=resume and run_dir.exists(), overwrite=not resume, log=say)
            run = json.loads((run_dir / RUN_FILE).read_text())
            metrics = json.loads((run_dir / "test_metrics.json").read_text())
            row = {"variant": name, "model": cfg.model, "fold": split.fold, "threshold": run["threshold"]}
            row.update({k: v["value"] for k, v in metrics["metrics"].items()})
            row.update({f"count_{k}" if not k.startswith("count") else k: v for k, v in metrics["counts"].items()})
            rows.append(row)
            frames.append(
                pd.read_csv(
                    run_dir / "test_predictions.csv",
                    keep_default_na=False,
                    na_values={"logit": [""], "p_ctc": [""]},
                )
            )
            runs.append(run)
        pooled = _pooled(frames, runs)
        pooled["p_ctc"] = 1.0 / (1.0 + np.exp(-pooled["logit"].to_numpy()))
        atomic_write_text(out / name / "oof_predictions.csv", pooled.to_csv(index=False))
        summary = write_metrics(out / name, pooled, 0.5, 1.0, base.n_boot, base.seed, prefix="oof_")
        f1 = summary["metrics"]["f1"]
        pooled_rows.append(
            {
                "variant": name,
                "pooled_f1": f1["value"],
                "pooled_f1_lo": f1["lo"],
                "pooled_f1_hi": f1["hi"],
                "count_mae": summary["counts"].get("count_mae"),
            }
        )
    per_fold = pd.DataFrame(rows)
    atomic_write_text(out / "per_fold.csv", per_fold.to_csv(index=False))
    table_rows = []
    for name in variants:
        sub = per_fold[per_fold["variant"] == name]
        stats = summarise_folds(sub[list(TABLE_METRICS)].to_dict("records"))
        stats = stats.set_index("metric") if "metric" in stats.columns else stats
        row: dict[str, Any] = {"variant": name, "model": variants[name].model, "folds": len(sub)}
        for m in TABLE_METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = float(stats.loc[m, "mean"]), float(stats.loc[m, "std"])
        row.update(next(r for r in pooled_rows if r["variant"] == name))
        table_rows.append(row)
    table = pd.DataFrame(table_rows)
    atomic_write_text(out / "table.csv", table.to_csv(index=False))
    shown = pd.DataFrame(
        {
            "variant": table["variant"],
            "model": table["model"],
            **{
                m: [_fmt(a, b) for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"], strict=True)]
                for m in ("f1", "precision", "recall", "specificity", "mcc", "pr_auc", "accuracy")
            },
            "pooled F1 [95% CI]": [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                for v, lo, hi in zip(table["pooled_f1"], table["pooled_f1_lo"], table["pooled_f1_hi"], strict=True)
            ],
            "count MAE": table["count_mae"].round(2),
        }
    )
    md = (
        f"# {title}\n\nDataset `{ds.path}` ({len(ds)} cells, {ds.header['n_samples']} patients, fingerprint "
        f"`{ds.fingerprint[:19]}`); {len(splits)} patient-grouped folds, seed {base.seed}. Values are mean ± std "
        f"over folds on the held-out patients; the pooled F1 interval resamples patients.\n\n"
        + to_markdown(shown)
        + "\n"
    )
    atomic_write_text(out / "table.md", md)
    plot_model_comparison(
        per_fold.rename(columns={"variant": "model", "model": "architecture"}), out / "comparison.png", metric="f1"
    )
    return CVResult(out, per_fold, table)
