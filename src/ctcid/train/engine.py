"""Training runs: one model on one patient-grouped split, with a run folder that records everything.

A run folder holds ``config.yaml`` (resolved options), ``folds.csv`` (which patient is where),
``history.csv`` and ``training_curves.png``, ``checkpoints/`` (``last.ckpt`` for ``--resume``,
``best.safetensors``), the model bundle in ``model/``, validation and (for a CV fold) test
predictions and metrics, and ``run.json`` (seed, versions, git revision, device, timings),
written last: a folder without a complete ``run.json`` is an unfinished run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import CtcidError
from ..io import CellDataset
from ..io._atomic import atomic_write_text
from ..io.store import package_versions
from .config import FEATURE_MODELS, TrainConfig
from .data import BatchPlan, Normalizer, StoreBatches, channel_normalisation, training_samples

__all__ = ["FitResult", "fit", "git_revision", "predictions_frame", "write_metrics"]

RUN_FILE = "run.json"


@dataclass
class FitResult:
    """What a finished run produced."""

    run_dir: Path
    bundle: Path
    threshold: float
    temperature: float
    best_epoch: int | None
    val_metrics: dict[str, float]
    test_metrics: dict[str, Any] | None
    test_predictions: pd.DataFrame | None


class EpochBatches(Sampler):
    """Yields batch numbers of one epoch, sharded over data-parallel ranks."""

    def __init__(self, dataset: StoreBatches, rank: int = 0, world: int = 1):
        self.dataset, self.rank, self.world = dataset, rank, world

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        per_rank = n // self.world if self.world > 1 else n
        return iter(range(self.rank, per_rank * self.world, self.world) if self.world > 1 else range(n))

    def __len__(self) -> int:
        return len(self.dataset) // self.world if self.world > 1 else len(self.dataset)


def git_revision() -> str | None:
    """The source tree's git revision, when ctcid runs from a checkout."""
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def accelerator_for(device: str, precision: str) -> tuple[str, str]:
    """Lightning accelerator and precision for ``device``/``precision`` options (bf16 autocast on GPU)."""
    from ..predict import resolve_device

    dev = resolve_device(device)
    if precision == "auto":
        precision = "bf16-mixed" if dev.type == "cuda" else "32-true"
    if precision == "32":
        precision = "32-true"
    return ("gpu" if dev.type == "cuda" else "cpu"), precision


def predictions_frame(
    ds: CellDataset, cells: np.ndarray, logits: np.ndarray, temperature: float, threshold: float, model_id: str
) -> pd.DataFrame:
    """Per-cell predictions: ids, label, logit, calibrated ``p_ctc``, call, uncertainty, QC flags, model id."""
    from ..evaluate import apply_temperature

    t = ds.table.iloc[cells]
    p = apply_temperature(logits, temperature)
    return pd.DataFrame(
        {
            "cell_id": t["cell_id"].to_numpy(),
            "sample_id": t["sample_id"].to_numpy(),
            "label": t["label"].to_numpy(),
            "logit": logits,
            "p_ctc": p,
            "call": np.where(p >= threshold, "ctc", "wbc"),
            "uncertainty": 1.0 - np.abs(2.0 * p - 1.0),
            "qc_flags": t["qc_flags"].to_numpy(),
            "model_id": model_id,
        }
    )


def write_metrics(
    out: Path, frame: pd.DataFrame, threshold: float, temperature: float, n_boot: int, seed: int, prefix: str = ""
) -> dict[str, Any]:
    """Metrics with patient-bootstrap intervals, per-patient counts and the four plots, for labelled rows."""
    from ..evaluate import evaluate_predictions, plot_calibration, plot_confusion, plot_pr_roc

    lab = frame[frame["label"].isin(["ctc", "wbc"])]
    y = (lab["label"] == "ctc").to_numpy().astype(int)
    res = evaluate_predictions(
        y,
        lab["logit"].to_numpy(),
        lab["sample_id"].to_numpy(),
        threshold=threshold,
        temperature=temperature,
        n_boot=n_boot,
        seed=seed,
    )
    metrics: pd.DataFrame = res["metrics"]
    atomic_write_text(out / f"{prefix}metrics.csv", metrics.to_csv(index=False))
    atomic_write_text(out / f"{prefix}counts.csv", res["counts"].to_csv(index=False))
    summary = {
        "threshold": threshold,
        "temperature": temperature,
        "n_cells": len(lab),
        "n_samples": int(lab["sample_id"].nunique()),
        "metrics": {r.metric: {"value": r.value, "lo": r.lo, "hi": r.hi} for r in metrics.itertuples()},
        "counts": res["count_summary"],
    }
    atomic_write_text(out / f"{prefix}metrics.json", json.dumps(summary, indent=2, default=float) + "\n")
    p = lab["p_ctc"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plot_pr_roc(y, p, out / f"{prefix}pr_roc.png", threshold=threshold)
        plot_confusion(y, (p >= threshold).astype(int), out / f"{prefix}confusion.png")
        plot_calibration(y, p, out / f"{prefix}calibration.png")
    return summary


def _launched_worker() -> bool:
    """True in a data-parallel process other than the first (its rank is set by the launcher or torchrun)."""
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        if int(os.environ.get(key, "0") or 0) > 0:
            return True
    return False


def split_cells(ds: CellDataset, split: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``sample_ids``, ``labels``, training and validation cells of a split, checked: no patient on both
    sides, and both classes on each side."""
    from ..evaluate import check_no_leakage

    sample_ids = ds.table["sample_id"].to_numpy()
    check_no_leakage(sample_ids, split)
    labels = ds.labels()
    train_cells = np.asarray(split.train, np.int64)
    val_cells = np.asarray(split.val, np.int64)
    for name, cells in (("training", train_cells), ("validation", val_cells)):
        if len(cells) == 0 or not (labels[cells] == 1).any() or not (labels[cells] == 0).any():
            raise CtcidError(f"the {name} set needs labelled cells of both classes (ctc and wbc)", ds.path)
    return sample_ids, labels, train_cells, val_cells


def run_started(ds: CellDataset, cfg: TrainConfig) -> dict[str, Any]:
    """The first ``run.json`` of a run (status ``running``)."""
    return {
        "status": "running",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": cfg.seed,
        "dataset": str(ds.path),
        "dataset_fingerprint": ds.fingerprint,
        "versions": package_versions(),
        "git_revision": git_revision(),
    }


def run_finished(out: Path, run_info: dict[str, Any], t_start: float, **fields: Any) -> None:
    """Write the completed ``run.json`` (written last: a run folder without it is unfinished)."""
    run_info.update(
        {
            "status": "complete",
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t_start, 1),
            **fields,
        }
    )
    atomic_write_text(out / RUN_FILE, json.dumps(run_info, indent=2, default=float) + "\n")


def training_record(
    ds: CellDataset,
    cfg: TrainConfig,
    sample_ids: np.ndarray,
    train_cells: np.ndarray,
    val_cells: np.ndarray,
    best_epoch: int | None,
    epochs_run: int,
) -> dict[str, Any]:
    """What a bundle records of its training: data, patients on each side, epochs and options."""
    return {
        "dataset_fingerprint": ds.fingerprint,
        "dataset": str(ds.path),
        "ingest": ds.header.get("ingest", {}),
        "train_cells": len(train_cells),
        "val_cells": len(val_cells),
        "train_samples": sorted(set(sample_ids[train_cells])),
        "val_samples": sorted(set(sample_ids[val_cells])),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "config": cfg.to_dict(),
    }


def test_cells_of(split: Any, labels: np.ndarray) -> np.ndarray:
    """The labelled test cells of a split (none for a plain train/validation split)."""
    test_cells = np.asarray(getattr(split, "test", []), np.int64)
    return test_cells[labels[test_cells] >= 0] if len(test_cells) else test_cells


def feature_meta(cfg: TrainConfig, names: list[str]) -> dict[str, Any]:
    """What a bundle records of its feature inputs: the columns, and the options that measured them."""
    if not names:
        return {}
    return {
        "names": list(names),
        "segmentation": cfg.segment_config().to_dict(),
        "config": cfg.feature_config().to_dict(),
    }


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*`isinstance.*LeafSpec.*")
    # every process validates on all validation cells, so epoch-level validation metrics need no syncing
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


def _prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Create or reopen a run folder; returns True when resuming from a checkpoint."""
    import shutil

    last = out / "checkpoints" / "last.ckpt"
    if out.exists():
        if resume:
            if (out / RUN_FILE).is_file() and json.loads((out / RUN_FILE).read_text()).get("status") == "complete":
                raise CtcidError("this run is already complete; nothing to resume", out)
            return last.is_file()
        if not overwrite:
            raise CtcidError(
                "already exists; pass --resume to continue this run or --overwrite to start again", out
            )
        shutil.rmtree(out)
    elif resume:
        raise CtcidError("no run to resume here", out)
    (out / "checkpoints").mkdir(parents=True)
    return False


def _check_same_config(path: Path, cfg: TrainConfig) -> None:
    """A run resumes only with the options it started with (progress display and loader workers aside)."""
    import yaml

    if not path.is_file():
        return
    before = (yaml.safe_load(path.read_text()) or {}).get("train", {})
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in ("progress", "workers") and before.get(k, now[k]) != now[k])
    if changed:
        raise CtcidError(
            f"--resume needs the options the run started with; changed: {', '.join(changed)} "
            "(see its config.yaml)",
            path.parent,
        )


def fit(
    ds: CellDataset,
    split: Any,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train one model on ``split`` (train/val and optional test cells of ``ds``) into the run folder ``out``.

    The threshold (max F1 of the CTC class) and temperature are fitted on the validation cells
    only; the test cells, when given, are predicted once at the end.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping

    from ..augment import BatchAugment
    from ..config import to_yaml
    from ..evaluate import (
        apply_temperature,
        classification_metrics,
        fit_temperature,
        fold_table,
        plot_training_curves,
        threshold_max_f1,
    )
    from ..models import BundleMeta, create_model, model_inputs, save_bundle
    from ..predict import infer_logits
    from .callbacks import AtomicLastCheckpoint, BestWeights, History, SamplerEpoch
    from .module import CTCClassifier

    say = log or (lambda _m: None)
    cfg.validate()
    if cfg.model == "features_gbm":
        from .gbm import fit_gbm

        return fit_gbm(ds, split, cfg, out, resume=resume, overwrite=overwrite, log=say)
    out = Path(out)
    ds.channel_index(cfg.channels + cfg.train_extra_channels)
    sample_ids, labels, train_cells, val_cells = split_cells(ds, split)
    child = _launched_worker()
    if child:  # a data-parallel worker started by the launcher: the first process owns the run folder
        resuming = resume and (out / "checkpoints" / "last.ckpt").is_file()
    else:
        resuming = _prepare_run_dir(out, resume, overwrite)
    if resuming and not child:
        _check_same_config(out / "config.yaml", cfg)
    _quiet_lightning()
    t_start = time.perf_counter()

    if not child:
        atomic_write_text(out / "config.yaml", to_yaml(cfg, "train"))
        atomic_write_text(out / "folds.csv", fold_table(sample_ids, [split], labels=labels).to_csv(index=False))
    run_info = run_started(ds, cfg)
    if not child:
        atomic_write_text(out / RUN_FILE, json.dumps(run_info, indent=2) + "\n")

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    accelerator, precision = accelerator_for(cfg.device, cfg.precision)
    on_gpu = accelerator == "gpu"
    feats, feat_names, model_kwargs = None, [], {}
    if cfg.model in FEATURE_MODELS:
        from .features import feature_inputs

        say("segmentation and hand-crafted features (computed once, cached in the dataset)")
        feats, feat_names = feature_inputs(ds, cfg)
        model_kwargs = {
            "n_features": len(feat_names),
            "pca_components": cfg.pca_components,
            "hidden": cfg.feature_hidden,
        }
        if cfg.model == "dual_branch":
            model_kwargs.update(backbone=cfg.backbone, fusion=cfg.fusion)
    model = create_model(
        cfg.model, in_chans=len(cfg.channels), pretrained=cfg.pretrained, weights=cfg.weights, **model_kwargs
    )
    if feats is not None:
        model.scaler.fit(feats[train_cells])
    inputs = model_inputs(model)
    if on_gpu:
        model = model.to(memory_format=torch.channels_last)
    crop = ds.crop_size[0]
    input_size = cfg.input_size or crop
    norm = channel_normalisation(
        ds, sorted(set(cfg.channels + cfg.train_extra_channels), key=ds.channels.index), cfg.flatfield_channels
    )
    normalizer = Normalizer(norm, ds.channels)
    chan_idx = ds.channel_index(cfg.channels)
    extra_idx = ds.channel_index(cfg.train_extra_channels) if cfg.train_extra_channels else []
    samples = training_samples(train_cells, chan_idx, extra_idx, cfg.extra_mode)
    plan = BatchPlan(
        samples,
        labels,
        cfg.batch_size,
        shuffle=True,
        balanced=cfg.sampler == "balanced",
        seed=cfg.seed,
        substitute=extra_idx if cfg.extra_mode == "substitute" else None,
        substitute_p=cfg.extra_p,
    )
    train_ds = StoreBatches(ds, plan, chan_idx + extra_idx, features=feats, images="image" in inputs)
    val_plan = BatchPlan(
        np.column_stack([val_cells, np.tile(chan_idx, (len(val_cells), 1))]),
        labels,
        max(cfg.batch_size, 256),
        shuffle=False,
        balanced=False,
        seed=cfg.seed,
    )
    val_ds = StoreBatches(ds, val_plan, chan_idx, features=feats, images="image" in inputs)
    augment_cfg = cfg.augment_config()
    augment = BatchAugment(augment_cfg, out_size=input_size) if "image" in inputs else None
    y_train = labels[samples[:, 0]]
    pos_weight = float(np.clip((y_train == 0).sum() / max(1, (y_train == 1).sum()), 1.0, 100.0))
    module = CTCClassifier(
        model,
        normalizer,
        augment,
        input_size=input_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        loss=cfg.loss,
        pos_weight=pos_weight,
        focal_gamma=cfg.focal_gamma,
        seed=cfg.seed,
        channels_last=on_gpu,
    )

    train_sampler = EpochBatches(train_ds)  # sharded over data-parallel processes once they exist (SamplerEpoch)
    loader_kw = {"batch_size": None, "num_workers": cfg.workers, "pin_memory": on_gpu, "persistent_workers": False}
    train_dl = DataLoader(train_ds, sampler=train_sampler, **loader_kw)
    val_dl = DataLoader(val_ds, sampler=EpochBatches(val_ds), **loader_kw)  # every process validates on all
    mode = "max" if cfg.monitor == "val_pr_auc" else "min"
    best = BestWeights(out / "checkpoints" / "best.safetensors", cfg.monitor, mode)
    history = History(out / "history.csv")
    callbacks = [
        SamplerEpoch(train_sampler),
        history,
        best,
        AtomicLastCheckpoint(out / "checkpoints"),
        EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience, check_finite=False),
    ]
    if cfg.progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=False))
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=precision,
        deterministic=not on_gpu,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=str(out),
        log_every_n_steps=1,
    )
    ckpt = str(out / "checkpoints" / "last.ckpt") if resuming else None
    if ckpt:
        say(f"resuming from {ckpt}")
    trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt, weights_only=True if ckpt else None)  # no unpickling
    if not trainer.is_global_zero:
        return FitResult(out, out / "model", 0.5, 1.0, None, {}, None, None)

    if not best.load_into(model):
        say("no epoch improved the validation metric; keeping the last weights")
    model = model.to(memory_format=torch.contiguous_format).cpu().eval()

    def logits_of(cells: np.ndarray) -> np.ndarray:
        return infer_logits(
            model,
            ds,
            cells,
            channels=cfg.channels,
            normalisation=norm,
            input_size=input_size,
            device=cfg.device,
            precision=cfg.precision,
            features=feats,
        )

    val_logits = logits_of(val_cells)
    y_val = labels[val_cells].astype(int)
    temperature = fit_temperature(val_logits, y_val)
    threshold = threshold_max_f1(y_val, apply_temperature(val_logits, temperature))
    val_metrics = classification_metrics(y_val, apply_temperature(val_logits, temperature), threshold)

    meta = BundleMeta(
        architecture=cfg.model,
        channels=list(cfg.channels),
        normalisation={c: norm[c] for c in cfg.channels},
        crop_size=list(ds.crop_size),
        input_size=input_size,
        pixel_size_um=ds.pixel_size_um,
        model_kwargs=model_kwargs,
        inputs=list(inputs),
        features=feature_meta(cfg, feat_names),
        threshold=threshold,
        temperature=temperature,
        training=training_record(ds, cfg, sample_ids, train_cells, val_cells, best.best_epoch, len(history.rows)),
        metrics={"validation": val_metrics},
    )
    save_bundle(out / "model", model, meta, overwrite=True)
    val_frame = predictions_frame(ds, val_cells, val_logits, temperature, threshold, meta.model_id)
    if feats is not None:
        from ..explain import explain_feature_model

        say("feature importance and per-cell attributions")
        explain_feature_model(
            out,
            model,
            feats,
            feat_names,
            labels,
            val_cells,
            test_cells_of(split, labels),
            ds,
            cfg,
            norm=norm,
            input_size=input_size,
        )
    atomic_write_text(out / "val_predictions.csv", val_frame.to_csv(index=False))
    if history.rows:
        plot_training_curves(pd.DataFrame(history.rows), out / "training_curves.png")

    test_summary, test_frame = None, None
    test_cells = test_cells_of(split, labels)
    if len(test_cells):
        test_frame = predictions_frame(
            ds, test_cells, logits_of(test_cells), temperature, threshold, meta.model_id
        )
        atomic_write_text(out / "test_predictions.csv", test_frame.to_csv(index=False))
        test_summary = write_metrics(out, test_frame, threshold, temperature, cfg.n_boot, cfg.seed, prefix="test_")

    run_finished(
        out,
        run_info,
        t_start,
        accelerator=accelerator,
        precision=precision,
        best_epoch=best.best_epoch,
        epochs_run=len(history.rows),
        model_id=meta.model_id,
        threshold=threshold,
        temperature=temperature,
        validation=val_metrics,
    )
    return FitResult(
        out, out / "model", threshold, temperature, best.best_epoch, val_metrics, test_summary, test_frame
    )
