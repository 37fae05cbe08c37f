"""From the packed store to batches: whole batches gathered at once, never a file decoded.

Training, evaluation and prediction read uint16 crops from the dataset's memory-mapped pixel store (or a copy
in memory when it is small), a whole batch per step. Each batch slot records which dataset channel feeds each
model input channel (``src``), so System A's "DAPI in training only" is just another choice of source channel
for the same single input. The pixels are scaled on the device by :func:`ctcid.data.prepare_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import CellDataset

__all__ = ["PRELOAD_BYTES", "BatchPlan", "StoreBatches", "available_memory", "training_samples"]

#: Load the needed channels of a dataset into memory when they take less than this (and less than a quarter
#: of the memory available, see :func:`available_memory`).
PRELOAD_BYTES = 2 << 30


def available_memory() -> int:
    """Bytes this process may still use: the smaller of the system's available memory and what its
    cgroup's limit leaves (v1 or v2); a large number when neither can be read."""
    best = 1 << 62
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    best = min(best, int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/proc/self/cgroup") as fh:
            groups = [line.strip().split(":", 2) for line in fh if line.count(":") >= 2]
    except OSError:
        return best
    for _, controllers, rel in groups:
        if controllers == "":  # cgroup v2
            limit, usage = f"/sys/fs/cgroup{rel}/memory.max", f"/sys/fs/cgroup{rel}/memory.current"
        elif "memory" in controllers.split(","):
            base = f"/sys/fs/cgroup/memory{rel}"
            limit, usage = f"{base}/memory.limit_in_bytes", f"{base}/memory.usage_in_bytes"
        else:
            continue
        try:
            with open(limit) as fl, open(usage) as fu:
                cap, used = fl.read().strip(), fu.read().strip()
            if cap != "max" and int(cap) < (1 << 60):
                best = min(best, max(0, int(cap) - int(used)))
        except (OSError, ValueError):
            continue
    return best


def training_samples(
    cells: np.ndarray,
    channel_idx: list[int],
    extra_idx: list[int],
    mode: str,
) -> np.ndarray:
    """Rows ``[cell, src_0, ..., src_{C_in-1}]`` for every training sample.

    ``mode="extra"`` adds, for each extra channel, one more sample per cell fed through the single
    input channel (System A's DAPI images added to training). ``mode="substitute"`` keeps one sample
    per cell; the substitution happens per batch (see :class:`StoreBatches`).
    """
    base = np.column_stack([cells, np.tile(np.asarray(channel_idx, np.int64), (len(cells), 1))])
    if not extra_idx or mode != "extra":
        return base
    rows = [base] + [np.column_stack([cells, np.full(len(cells), e, np.int64)]) for e in extra_idx]
    return np.concatenate(rows)


@dataclass
class BatchPlan:
    """Which samples make the batches: rows ``[cell, src...]``, the dataset's labels, batch size and order."""

    samples: np.ndarray  # [S, 1 + C_in]
    labels: np.ndarray  # [N] int8 over the whole dataset
    batch_size: int
    shuffle: bool
    balanced: bool
    seed: int
    substitute: list[int] | None = None  # extra source channels for mode="substitute"
    substitute_p: float = 0.0


class StoreBatches(Dataset):
    """A map-style dataset whose items are whole batches (use ``DataLoader(batch_size=None)``).

    With ``preload`` (training: every cell is read every epoch) the needed channels of the cells in the
    plan are copied into memory when small enough; otherwise (and always for one pass, such as prediction)
    batches are read from the memory-mapped store, so memory does not grow with the dataset.

    The order of cells depends only on ``(seed, epoch)``: set ``epoch`` before each epoch. With
    ``balanced`` the epoch draws cells with replacement so that both classes are equally likely.
    """

    def __init__(
        self,
        ds: CellDataset,
        plan: BatchPlan,
        channels_needed: list[int],
        features: np.ndarray | None = None,
        images: bool = True,
        preload: bool = True,
    ):
        self.plan = plan
        self.features = features
        self.with_images = images
        self.epoch = 0
        self.needed = sorted(set(channels_needed))
        self._remap = np.zeros(max(self.needed) + 1, np.int64)  # dataset channel -> position among needed
        self._remap[self.needed] = np.arange(len(self.needed))
        pix = ds.pixels
        cells_used = np.unique(plan.samples[:, 0])
        nbytes = len(cells_used) * len(self.needed) * pix.shape[2] * pix.shape[3] * 2
        if not images or not preload or nbytes > min(PRELOAD_BYTES, available_memory() // 4):
            self._store, self._lookup = None, None
        else:
            self._store = np.ascontiguousarray(ds.images(cells_used, [ds.channels[c] for c in self.needed]))
            self._lookup = np.full(len(pix), -1, np.int64)
            self._lookup[cells_used] = np.arange(len(cells_used))
        self._pix = pix

    def __len__(self) -> int:
        n = len(self.plan.samples)
        return max(1, (n + self.plan.batch_size - 1) // self.plan.batch_size)

    def _order(self) -> np.ndarray:
        p = self.plan
        n = len(p.samples)
        if not p.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([p.seed, self.epoch])
        if p.balanced:
            y = p.labels[p.samples[:, 0]]
            w = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum()))
            return rng.choice(n, size=n, replace=True, p=w / w.sum())
        return rng.permutation(n)

    def batch_rows(self, index: int) -> np.ndarray:
        if getattr(self, "_cached_epoch", None) != self.epoch:
            self._cached_order = self._order()
            self._cached_epoch = self.epoch
        b = self.plan.batch_size
        return self.plan.samples[self._cached_order[index * b : (index + 1) * b]]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rows = self.batch_rows(index).copy()
        p = self.plan
        if p.substitute and p.substitute_p > 0:
            rng = np.random.default_rng([p.seed, self.epoch, index, 1])
            swap = rng.random(len(rows)) < p.substitute_p
            rows[swap, 1] = rng.choice(np.asarray(p.substitute), size=int(swap.sum()))
        cells, src = rows[:, 0], rows[:, 1:]
        out = {
            "src": torch.from_numpy(src.astype(np.int64)),
            "y": torch.from_numpy(p.labels[cells].astype(np.float32)),
            "index": torch.from_numpy(cells.astype(np.int64)),
        }
        if self.features is not None:
            out["features"] = torch.from_numpy(np.ascontiguousarray(self.features[cells], dtype=np.float32))
        if not self.with_images:
            return out
        local = self._remap[src]
        if self._store is not None:
            block = self._store[self._lookup[cells]]
        else:
            order = np.argsort(cells, kind="stable")
            block = np.empty((len(cells), len(self.needed), *self._pix.shape[2:]), np.uint16)
            block[order] = self._pix[cells[order]][:, self.needed]
        pixels = block[np.arange(len(cells))[:, None], local]  # [B, C_in, H, W]
        out["pixels"] = torch.from_numpy(np.ascontiguousarray(pixels))
        return out
