"""Fitting a network (any timm backbone, the feature MLP or the dual branch) with Lightning.

Batches come from the packed store (:class:`ctcid.data.StoreBatches`), are prepared on the device by
:func:`ctcid.data.prepare_batch` (window, augmentation, standardisation), and the best epoch by the validation
metric is kept; an interrupted run continues from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .._runtime import accelerator_for, quiet_lightning
from ..config import arguments_for
from ..data import (
    BatchPlan,
    Normalizer,
    StoreBatches,
    channel_normalisation,
    feature_matrix,
    stand_in_normalisation,
    training_samples,
)
from ..models import BundleMeta, FeatureInputs, create_model, model_inputs
from ..predict import infer_logits
from .config import FEATURE_MODELS, TrainConfig
from .finish import Fitted, prior_shift_of
from .run import TrainingRun

__all__ = ["EpochBatches", "feature_spec", "fit_network"]


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


def feature_spec(cfg: TrainConfig, names: list[str]) -> FeatureInputs | None:
    """What a bundle records of its feature inputs: the columns, and the options that measured them."""
    if not names:
        return None
    return FeatureInputs(names=list(names), segmentation=cfg.segmentation, config=cfg.features)


@dataclass
class _Setup:
    """The model and the batches of a network run."""

    model: torch.nn.Module
    model_kwargs: dict[str, Any]
    feats: np.ndarray | None
    feat_names: list[str]
    norm: dict[str, dict[str, Any]]
    input_size: int
    train_ds: StoreBatches
    val_ds: StoreBatches
    pos_weight: float
    y_train: np.ndarray


def _setup(run: TrainingRun, say: Callable[[str], None]) -> _Setup:
    cfg, ds = run.cfg, run.ds
    feats, feat_names, model_kwargs = None, [], {}
    if cfg.model in FEATURE_MODELS:
        say("segmentation and hand-crafted features (computed once, cached in the dataset)")
        feats, feat_names = feature_matrix(ds, cfg.segmentation, cfg.features, channels=cfg.channels)
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
        model.scaler.fit(feats[run.train_cells])
    images = "image" in model_inputs(model)
    used = sorted(set(cfg.channels + cfg.train_extra_channels), key=ds.channels.index)
    norm = channel_normalisation(ds, used, cfg.flatfield_channels)
    if cfg.extra_look == "stand-in" and cfg.train_extra_channels:
        _stand_in(run, norm)
    chan_idx = ds.channel_index(cfg.channels)
    extra_idx = ds.channel_index(cfg.train_extra_channels) if cfg.train_extra_channels else []
    samples = training_samples(run.train_cells, chan_idx, extra_idx, cfg.extra_mode)
    plan = BatchPlan(
        samples,
        run.labels,
        cfg.batch_size,
        shuffle=True,
        balanced=cfg.sampler == "balanced",
        seed=cfg.seed,
        substitute=extra_idx if cfg.extra_mode == "substitute" else None,
        substitute_p=cfg.extra_p,
    )
    val_rows = np.column_stack([run.val_cells, np.tile(chan_idx, (len(run.val_cells), 1))])
    val_plan = BatchPlan(
        val_rows, run.labels, max(cfg.batch_size, 256), shuffle=False, balanced=False, seed=cfg.seed
    )
    y_train = run.labels[samples[:, 0]]
    return _Setup(
        model=model,
        model_kwargs=model_kwargs,
        feats=feats,
        feat_names=feat_names,
        norm=norm,
        input_size=cfg.input_size or ds.crop_size[0],
        train_ds=StoreBatches(ds, plan, chan_idx + extra_idx, features=feats, images=images),
        val_ds=StoreBatches(ds, val_plan, chan_idx, features=feats, images=images),
        pos_weight=float(np.clip((y_train == 0).sum() / max(1, (y_train == 1).sum()), 1.0, 100.0)),
        y_train=y_train,
    )


#: Training cells on which the augmentation strengths (``augment_strength="data"``) and the look of stand-in
#: extra channels (``extra_look="stand-in"``) are measured.
GROUNDING_CELLS = 2000


def _stand_in(run: TrainingRun, norm: dict[str, dict[str, Any]]) -> None:
    """Rescale each extra training channel's window to look like the input channel (``extra_look="stand-in"``),
    measured on the training patients; the measures are written to ``extra_channels.json``."""
    import json

    from ..io._atomic import atomic_write_text

    cfg = run.cfg
    cells = np.random.default_rng(cfg.seed).permutation(run.train_cells)[:GROUNDING_CELLS]
    record = {}
    for extra in cfg.train_extra_channels:
        norm[extra], measures = stand_in_normalisation(
            run.ds, cells, extra, cfg.channels[0], norm, cfg.flatfield_channels
        )
        record[extra] = {"look": "stand-in", "stands_in_for": cfg.channels[0], "window": norm[extra], **measures}
    if not run.child:
        atomic_write_text(run.out / "extra_channels.json", json.dumps(record, indent=2) + "\n")


def _augment_config(run: TrainingRun, s: _Setup) -> Any:
    """The run's augmentation: as configured, or with its strengths measured on the training patients (written
    to ``augment.json`` with the measures).

    The measures are taken on the input channels only, the images the model will be tested on: channels added in
    training (DAPI) get the same augmentation and do not move its strengths, so a variant with DAPI added
    differs from one without only by DAPI."""
    import json

    from ..augment import grounded_config, measure_variation
    from ..io._atomic import atomic_write_text

    cfg, ds = run.cfg, run.ds
    if cfg.augment_strength == "fixed":
        return cfg.augment
    rng = np.random.default_rng(cfg.seed)
    cells = np.sort(rng.permutation(run.train_cells)[:GROUNDING_CELLS])
    channels = list(cfg.channels)
    idx = ds.channel_index(channels)
    pixels = torch.from_numpy(ds.images(cells, channels).astype(np.int32))
    src = torch.tensor(idx, dtype=torch.long)[None, :].expand(len(cells), len(idx))
    x = Normalizer(s.norm, ds.channels).window(pixels, src)
    stats = measure_variation(x, run.sample_ids[cells])
    grounded = grounded_config(cfg.augment, stats)
    if not run.child:
        record = {
            "augment": grounded.to_dict(),
            "measured_on": {"cells": len(cells), "patients": int(stats["patients"]), "channels": channels},
            "patient_medians": {k: np.asarray(v).tolist() for k, v in stats.items() if isinstance(v, np.ndarray)},
        }
        atomic_write_text(run.out / "augment.json", json.dumps(record, indent=2) + "\n")
    return grounded


def _trainer(run: TrainingRun, s: _Setup, accelerator: str, precision: str) -> tuple[Any, Any, Any, Any, Any]:
    """The Lightning module, trainer, loaders and the callbacks whose state the finish step reads."""
    import lightning.pytorch as pl

    from ..augment import BatchAugment
    from .callbacks import (
        AtomicLastCheckpoint,
        BestWeights,
        EpochEarlyStopping,
        EpochProgress,
        History,
        SamplerEpoch,
    )
    from .module import CTCClassifier

    cfg, out = run.cfg, run.out
    on_gpu = accelerator == "gpu"
    if on_gpu:
        s.model = s.model.to(memory_format=torch.channels_last)
    augment = None
    if s.train_ds.with_images:
        augment = BatchAugment(_augment_config(run, s), out_size=s.input_size)
    hparams = arguments_for(
        CTCClassifier, cfg, input_size=s.input_size, pos_weight=s.pos_weight, channels_last=on_gpu
    )
    module = CTCClassifier(s.model, Normalizer(s.norm, run.ds.channels), augment, **hparams)
    sampler = EpochBatches(s.train_ds)  # sharded over data-parallel processes once they exist (SamplerEpoch)
    loader_kw = {"batch_size": None, "num_workers": cfg.workers, "pin_memory": on_gpu, "persistent_workers": False}
    train_dl = DataLoader(s.train_ds, sampler=sampler, **loader_kw)
    val_dl = DataLoader(s.val_ds, sampler=EpochBatches(s.val_ds), **loader_kw)  # every process validates on all
    mode = "max" if cfg.monitor == "val_pr_auc" else "min"
    best = BestWeights(out / "checkpoints" / "best.safetensors", cfg.monitor, mode)
    history = History(out / "history.csv")
    callbacks = [
        SamplerEpoch(sampler),
        history,
        best,
        AtomicLastCheckpoint(out / "checkpoints"),
        EpochEarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience, check_finite=False),
    ]
    if cfg.progress:
        callbacks.append(EpochProgress(leave=False))
    trainer = pl.Trainer(
        max_epochs=cfg.epochs if cfg.max_steps is None else -1,
        max_steps=cfg.max_steps or -1,
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
    return module, trainer, (train_dl, val_dl), best, history


def fit_network(run: TrainingRun, log: Callable[[str], None] | None = None) -> Fitted | None:
    """Train the run's network; ``None`` in a data-parallel worker process (the first process finishes)."""
    import lightning.pytorch as pl

    say = log or (lambda _m: None)
    cfg, ds, out = run.cfg, run.ds, run.out
    quiet_lightning()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    accelerator, precision = accelerator_for(cfg.device, cfg.precision)
    s = _setup(run, say)
    module, trainer, (train_dl, val_dl), best, history = _trainer(run, s, accelerator, precision)
    ckpt = str(out / "checkpoints" / "last.ckpt") if run.resuming else None
    if ckpt:
        say(f"resuming from {ckpt}")
    trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt, weights_only=True if ckpt else None)  # no unpickling
    if not trainer.is_global_zero:
        return None
    model = s.model
    if not best.load_into(model):
        say("no epoch improved the validation metric; keeping the last weights")
    model = model.to(memory_format=torch.contiguous_format).cpu().eval()

    def logits(cells: np.ndarray) -> np.ndarray:
        return infer_logits(
            model,
            ds,
            cells,
            channels=cfg.channels,
            normalisation=s.norm,
            input_size=s.input_size,
            device=cfg.device,
            precision=cfg.precision,
            features=s.feats,
        )

    meta = BundleMeta(
        architecture=cfg.model,
        channels=list(cfg.channels),
        normalisation={c: s.norm[c] for c in cfg.channels},
        crop_size=list(ds.crop_size),
        input_size=s.input_size,
        pixel_size_um=ds.pixel_size_um,
        model_kwargs=s.model_kwargs,
        inputs=list(model_inputs(model)),
        features=feature_spec(cfg, s.feat_names),
    )
    return Fitted(
        model=model,
        logits=logits,
        meta=meta,
        prior_shift=prior_shift_of(cfg, s.y_train, s.pos_weight),
        best_epoch=best.best_epoch,
        epochs_run=len(history.rows),
        accelerator=accelerator,
        precision=precision,
        features=s.feats,
        extra={"normalisation": s.norm, "input_size": s.input_size},
    )
