"""System B's classical baseline: gradient-boosted trees on the feature table, in the same run folder.

Same splits, threshold and temperature fitted on validation patients, metrics and bundle format as the
CNNs. scikit-learn grows the trees; the number kept is the round with the best validation PR-AUC (the
validation patients, never the test ones), and the kept trees are exported to portable arrays
(:class:`ctcid.models.TreeEnsemble`), so the bundle holds no pickle.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import CellDataset
from ..io._atomic import atomic_write_text
from .config import GBM_DEFAULTS, TrainConfig

__all__ = ["fit_gbm"]


def fit_gbm(
    ds: CellDataset,
    split: Any,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Train ``features_gbm`` on ``split`` into the run folder ``out`` (see :func:`ctcid.train.fit`).

    Trees train in seconds, so ``resume`` simply trains again from the start.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score, log_loss

    from ..config import to_yaml
    from ..evaluate import (
        apply_temperature,
        classification_metrics,
        fit_temperature,
        fold_table,
        plot_training_curves,
        threshold_max_f1,
    )
    from ..explain import explain_feature_model
    from ..models import BundleMeta, TreeEnsemble, save_bundle
    from .engine import (
        RUN_FILE,
        FitResult,
        _prepare_run_dir,
        feature_meta,
        predictions_frame,
        run_finished,
        run_started,
        split_cells,
        test_cells_of,
        training_record,
        write_metrics,
    )
    from .features import feature_inputs

    say = log or (lambda _m: None)
    out = Path(out)
    ds.channel_index(cfg.channels)
    sample_ids, labels, train_cells, val_cells = split_cells(ds, split)
    if out.exists() and resume:
        overwrite = True
    _prepare_run_dir(out, False, overwrite)
    t_start = time.perf_counter()
    atomic_write_text(out / "config.yaml", to_yaml(cfg, "train"))
    atomic_write_text(out / "folds.csv", fold_table(sample_ids, [split], labels=labels).to_csv(index=False))
    run_info = run_started(ds, cfg)
    atomic_write_text(out / RUN_FILE, json.dumps(run_info, indent=2) + "\n")

    say("segmentation and hand-crafted features (computed once, cached in the dataset)")
    feats, names = feature_inputs(ds, cfg)
    X = feats.astype(np.float64)
    opts = {**GBM_DEFAULTS, **cfg.gbm}
    clf = HistGradientBoostingClassifier(
        **opts,
        early_stopping=False,
        class_weight="balanced" if cfg.loss in ("weighted_bce", "focal") or cfg.sampler == "balanced" else None,
        random_state=cfg.seed,
    )
    say(f"growing up to {opts['max_iter']} trees on {len(train_cells)} cells, {len(names)} features")
    clf.fit(X[train_cells], labels[train_cells].astype(int))
    y_val = labels[val_cells].astype(int)
    rows = []
    for i, raw in enumerate(clf.staged_decision_function(X[val_cells])):
        p = 1.0 / (1.0 + np.exp(-np.ravel(raw)))
        rows.append(
            {
                "epoch": i,
                "val_loss": float(log_loss(y_val, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
                "val_pr_auc": float(average_precision_score(y_val, p)),
            }
        )
    history = pd.DataFrame(rows)
    key = cfg.monitor
    best = int(history[key].idxmax() if key == "val_pr_auc" else history[key].idxmin())
    trees = TreeEnsemble.from_sklearn(clf, best + 1)
    atomic_write_text(out / "history.csv", history.to_csv(index=False))
    if len(history):
        plot_training_curves(history, out / "training_curves.png")

    val_logits = trees.decision_function(X[val_cells])
    temperature = fit_temperature(val_logits, y_val)
    threshold = threshold_max_f1(y_val, apply_temperature(val_logits, temperature))
    val_metrics = classification_metrics(y_val, apply_temperature(val_logits, temperature), threshold)
    meta = BundleMeta(
        architecture="features_gbm",
        channels=list(cfg.channels),
        normalisation={},
        crop_size=list(ds.crop_size),
        input_size=ds.crop_size[0],
        pixel_size_um=ds.pixel_size_um,
        model_kwargs={"trees": trees.n_trees, **opts},
        inputs=["features"],
        features=feature_meta(cfg, names),
        threshold=threshold,
        temperature=temperature,
        training=training_record(ds, cfg, sample_ids, train_cells, val_cells, best, len(history)),
        metrics={"validation": val_metrics},
    )
    save_bundle(out / "model", trees, meta, overwrite=True)
    atomic_write_text(
        out / "val_predictions.csv",
        predictions_frame(ds, val_cells, val_logits, temperature, threshold, meta.model_id).to_csv(index=False),
    )
    test_cells = test_cells_of(split, labels)
    say("feature importance and per-cell attributions")
    train_mean = np.nanmean(np.where(np.isfinite(X[train_cells]), X[train_cells], np.nan), axis=0)
    explain_feature_model(
        out,
        trees,
        X,
        names,
        labels,
        val_cells,
        test_cells,
        ds,
        cfg,
        train_mean=np.where(np.isfinite(train_mean), train_mean, 0.0),
    )
    test_summary, test_frame = None, None
    if len(test_cells):
        test_frame = predictions_frame(
            ds, test_cells, trees.decision_function(X[test_cells]), temperature, threshold, meta.model_id
        )
        atomic_write_text(out / "test_predictions.csv", test_frame.to_csv(index=False))
        test_summary = write_metrics(out, test_frame, threshold, temperature, cfg.n_boot, cfg.seed, prefix="test_")
    run_finished(
        out,
        run_info,
        t_start,
        accelerator="cpu",
        precision="float64",
        best_epoch=best,
        epochs_run=len(history),
        model_id=meta.model_id,
        threshold=threshold,
        temperature=temperature,
        validation=val_metrics,
    )
    return FitResult(out, out / "model", threshold, temperature, best, val_metrics, test_summary, test_frame)
