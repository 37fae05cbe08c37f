"""Data-parallel prediction through the training engine's strategy (Lightning DDP).

Every process reads its share of the batches straight from the memory-mapped store (batch ``r``,
``r + world``, ... for rank ``r``: every cell exactly once, no padding), and the first process gathers the
logits by cell index. Processes other than the first are started by Lightning's launcher (or by
``torchrun``/SLURM); they compute and hand over their share, and never write outputs.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .._runtime import accelerator_for
from ..data import BatchPlan, Normalizer, StoreBatches, network_inputs
from ..io import CellDataset

__all__ = ["distributed_logits"]


class _Shard(Sampler):
    """Batches ``rank, rank + world, ...`` of the dataset's batches; set once the processes exist."""

    def __init__(self, n_batches: int):
        self.n, self.rank, self.world = n_batches, 0, 1

    def __iter__(self):  # type: ignore[override]
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class _Predictor(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, norm: Normalizer, input_size: int, shard: _Shard):
        super().__init__()
        self.model, self.norm, self.input_size, self.shard = model, norm, input_size, shard
        self.inputs = tuple(getattr(model, "inputs", ("image",)))
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.gathered: list[list[tuple[np.ndarray, np.ndarray]]] | None = None

    def setup(self, stage: str) -> None:
        self.shard.rank, self.shard.world = self.trainer.global_rank, self.trainer.world_size

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        args = network_inputs(batch, self.norm, self.input_size, self.inputs, self.device)
        logits = self.model(*args).reshape(-1).float()
        self.parts.append((batch["index"].cpu().numpy(), logits.cpu().numpy()))

    def on_predict_epoch_end(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            everything: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everything, self.parts)
            self.gathered = everything
        else:
            self.gathered = [self.parts]


def distributed_logits(
    bundle: Any,
    ds: CellDataset,
    cells: np.ndarray,
    *,
    devices: int | str,
    strategy: str = "ddp",
    num_nodes: int = 1,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 256,
) -> np.ndarray | None:
    """Logits of ``cells`` computed by ``devices`` processes; ``None`` in every process but the first."""
    import logging
    import warnings

    from .infer import bundle_features

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    meta = bundle.meta
    cells = np.asarray(cells, np.int64)
    src = ds.channel_index(meta.channels)
    samples = np.column_stack([cells, np.tile(np.asarray(src, np.int64), (len(cells), 1))])
    if isinstance(devices, int) and devices > 0:  # every process gets at least one batch
        world = devices * max(1, num_nodes)
        batch_size = max(1, min(batch_size, -(-len(cells) // world)))
    plan = BatchPlan(samples, np.zeros(len(ds), np.int8), batch_size, shuffle=False, balanced=False, seed=0)
    inputs = tuple(getattr(bundle.model, "inputs", ("image",)))
    batches = StoreBatches(
        ds, plan, src, features=bundle_features(meta, ds), images="image" in inputs, preload=False
    )
    shard = _Shard(len(batches))
    module = _Predictor(bundle.model.eval(), Normalizer(meta.normalisation, ds.channels), meta.input_size, shard)
    accelerator, prec = accelerator_for(device, precision)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=prec,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.predict(module, DataLoader(batches, sampler=shard, batch_size=None), return_predictions=False)
    if not trainer.is_global_zero:
        return None
    index = np.concatenate([i for part in module.gathered or [] for i, _ in part])
    logits = np.concatenate([v for part in module.gathered or [] for _, v in part])
    if len(index) != len(cells) or len(np.unique(index)) != len(cells):
        raise RuntimeError(f"data-parallel prediction returned {len(index)} logits for {len(cells)} cells")
    out = np.empty(len(ds), np.float32)
    out[index] = logits
    return out[cells]
