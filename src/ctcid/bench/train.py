"""``ctcid bench train``: training throughput, model-only against end to end, in one run.

Model-only: random tensors already on the device, forward + backward + optimiser step. End to end:
the real data path, a packed store -> batches of uint16 crops -> device -> window -> augmentation
(all three families) -> standardise -> the same step, driven by the Lightning trainer as in
``ctcid train``. The ratio says how much the data path costs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["bench_train"]


def _random_store(folder: Path, cells: int, size: int, seed: int) -> Path:
    import pandas as pd

    from ..io import DatasetWriter

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    writer = DatasetWriter(folder, ["BF", "DAPI"], size, 0.64)
    chunk = 1024
    for start in range(0, cells, chunk):
        n = min(chunk, cells - start)
        px = rng.integers(500, 30000, size=(n, 2, size, size), dtype=np.uint16)
        writer.append(
            px,
            pd.DataFrame(
                {
                    "cell_id": [f"c{start + i}" for i in range(n)],
                    "sample_id": [f"P{(start + i) % 20:02d}" for i in range(n)],
                    "label": np.where(rng.random(n) < 0.2, "ctc", "wbc"),
                    "qc_flags": "",
                }
            ),
        )
    writer.finish({"source": {"root": "bench", "layout": "bench", "detected": False}, "rejected": 0})
    return folder


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":  # inside the timed loops: nothing to import or wait for on the CPU
        import torch

        torch.cuda.synchronize()


@dataclass
class _Workload:
    """What is timed: the network, the batch, the crop size, the steps timed and the warm-up steps before them."""

    model: str
    batch_size: int
    size: int
    steps: int
    warmup: int
    compile: bool
    seed: int


def bench_train(
    model: str = "resnet50",
    batch_size: int = 512,
    size: int = 96,
    steps: int = 30,
    warmup: int = 5,
    device: str = "auto",
    precision: str = "auto",
    workers: int = 2,
    compile: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Images/s of training steps with and without the data path, measured side by side."""
    import torch

    from .._runtime import autocast_dtype, resolve_device
    from .ingest import machine_info

    dev = resolve_device(device)
    amp = autocast_dtype(dev, precision)
    on_gpu = dev.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    work = _Workload(model, batch_size, size, steps, warmup, compile, seed)
    model_only = _model_only_rate(work, dev, amp)
    end_to_end = _end_to_end_rate(work, dev, device, precision, workers)
    return {
        "benchmark": "train",
        "machine": machine_info(),
        "device": torch.cuda.get_device_name(dev) if on_gpu else "cpu",
        "workload": {
            "model": model,
            "batch_size": batch_size,
            "size_px": size,
            "in_chans": 1,
            "steps": steps,
            "warmup": warmup,
            "precision": str(amp) if amp else "fp32",
            "channels_last": on_gpu,
            "compile": compile,
            "augment": "geometric + illumination + noise",
            "loader_workers": workers,
        },
        "model_only_images_per_s": round(model_only, 1),
        "end_to_end_images_per_s": round(end_to_end, 1),
        "ratio": round(end_to_end / model_only, 3),
        "target_ratio_gpu": 0.90,
    }


def _model_only_rate(work: _Workload, dev: torch.device, amp: torch.dtype | None) -> float:
    """Images/s of forward + backward + optimiser steps on one random batch already on the device."""
    import torch
    import torch.nn.functional as F

    from ..models import create_model

    on_gpu = dev.type == "cuda"
    net = create_model(work.model, in_chans=1).to(dev)
    if on_gpu:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(work.batch_size, 1, work.size, work.size, device=dev)
    if on_gpu:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(work.batch_size, device=dev) < 0.2).float()
    step_net = torch.compile(net) if work.compile else net

    def step() -> None:
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            loss = F.binary_cross_entropy_with_logits(step_net(x).reshape(-1).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(work.warmup):
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(work.steps):
        step()
    _sync(dev)
    return work.steps * work.batch_size / (time.perf_counter() - t0)


def _end_to_end_rate(work: _Workload, dev: torch.device, device: str, precision: str, workers: int) -> float:
    """Images/s of the same steps driven by the Lightning trainer as in ``ctcid train``, through the real data
    path (store -> batches -> device -> window -> augmentation -> standardise), timed after the warm-up."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from .._runtime import accelerator_for, quiet_lightning
    from ..data import BatchPlan, StoreBatches, channel_normalisation, training_samples
    from ..io import CellDataset
    from ..train.network import EpochBatches

    on_gpu = dev.type == "cuda"
    quiet_lightning()
    cells = work.batch_size * (work.steps + work.warmup + 2)
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-") as tmp:
        ds = CellDataset.open(_random_store(Path(tmp) / "ds", cells, work.size, work.seed))
        norm = channel_normalisation(ds, ["BF"], flatfield=["BF"])
        rows = training_samples(np.arange(len(ds)), [0], [], "extra")
        batches = StoreBatches(ds, BatchPlan(rows, ds.labels(), work.batch_size, True, False, work.seed), [0])
        loader = DataLoader(
            batches,
            sampler=EpochBatches(batches),
            batch_size=None,
            num_workers=workers,
            pin_memory=on_gpu,
            persistent_workers=workers > 0,
        )
        module = _classifier(work, ds.channels, norm, on_gpu)

        class Timer(pl.Callback):
            t_start = t_end = 0.0

            def on_train_batch_start(self, trainer: pl.Trainer, *_: Any) -> None:
                if trainer.global_step == work.warmup:
                    _sync(dev)
                    self.t_start = time.perf_counter()

            def on_train_end(self, trainer: pl.Trainer, *_: Any) -> None:
                _sync(dev)
                self.t_end = time.perf_counter()

        timer = Timer()
        accel, prec = accelerator_for(device, precision)
        trainer = pl.Trainer(
            max_steps=work.warmup + work.steps,
            accelerator=accel,
            devices=1,
            precision=prec,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[timer],
            use_distributed_sampler=False,
        )
        trainer.fit(module, loader)
        return work.steps * work.batch_size / (timer.t_end - timer.t_start)


def _classifier(
    work: _Workload, channels: list[str], norm: dict[str, dict[str, float | str]], on_gpu: bool
) -> torch.nn.Module:
    """The training module of ``ctcid train`` around a fresh network, with all three augmentation families."""
    import torch

    from ..augment import AugmentConfig, BatchAugment
    from ..data import Normalizer
    from ..models import create_model
    from ..train.module import CTCClassifier

    net = create_model(work.model, in_chans=1)
    if on_gpu:
        net = net.to(memory_format=torch.channels_last)
    module = CTCClassifier(
        net,
        Normalizer(norm, channels),
        BatchAugment(AugmentConfig(), out_size=work.size),
        input_size=work.size,
        lr=1e-4,
        weight_decay=0.0,
        loss="bce",
        pos_weight=1.0,
        focal_gamma=2.0,
        seed=work.seed,
        channels_last=on_gpu,
    )
    if work.compile:
        module.model = torch.compile(module.model)
    return module
