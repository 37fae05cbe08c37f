"""Lightning callbacks that make a run folder trustworthy: history, best weights, atomic resumable checkpoints."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

from ..io._atomic import atomic_write_text

__all__ = ["AtomicLastCheckpoint", "BestWeights", "EpochEarlyStopping", "EpochProgress", "History", "SamplerEpoch"]


def _replayed_epoch_end(trainer: pl.Trainer) -> bool:
    """Whether this end of epoch only replays the one a resumed checkpoint was saved at: Lightning restarts a run
    with a step budget (``max_steps``) inside the epoch it last finished and calls its end again, with nothing
    trained or validated since the resume (no metric logged yet)."""
    return not trainer.callback_metrics


class SamplerEpoch(pl.Callback):
    """Tell the batch sampler which epoch starts (the batch order depends only on seed and epoch), and, once
    the processes of a data-parallel run exist, which share of the batches this process takes."""

    def __init__(self, sampler: Any):
        self.sampler = sampler

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.sampler.rank, self.sampler.world = trainer.global_rank, trainer.world_size

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sampler.set_epoch(trainer.current_epoch)


def planned_epochs(max_epochs: int | None, max_steps: int, batches_per_epoch: float) -> int | None:
    """The epochs a run will train for, counted from 1: ``max_epochs``, or with a step budget (Lightning then
    runs with ``max_epochs=-1``) the epochs that budget fills; ``None`` where neither says.

    >>> [planned_epochs(e, s, 29) for e, s in [(30, -1), (-1, 696), (-1, 700), (-1, -1)]]
    [30, 24, 25, None]
    """
    if max_epochs is not None and max_epochs > 0:
        return max_epochs
    if max_steps > 0 and 0 < batches_per_epoch < math.inf:
        return math.ceil(max_steps / batches_per_epoch)
    return None


class EpochProgress(RichProgressBar):
    """Lightning's rich progress bar, with epochs counted from 1 out of those the run will train: a run with a
    step budget shows ``Epoch 24/24`` where Lightning's own bar shows ``Epoch 23/-2``."""

    def _get_train_description(self, current_epoch: int) -> str:
        t = self.trainer
        total = planned_epochs(t.max_epochs, t.max_steps, t.num_training_batches)
        text = f"Epoch {current_epoch + 1}" + (f"/{total}" if total else "")
        return f"{text:{len(self.validation_description)}}"


class History(pl.Callback):
    """One row per epoch (losses, validation metrics, learning rate, seconds), written to ``history.csv``.

    An epoch cut short by the step budget (``max_steps`` not a whole number of epochs) ends without a validation;
    its row leaves the validation columns empty rather than repeat the last epoch's."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self._t0 = time.perf_counter()
        self._validated = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._validated = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if _replayed_epoch_end(trainer):  # its row was written before the checkpoint
            return
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        for key in ("train_loss", "val_loss", "val_pr_auc", "val_f1"):
            if key in m and (self._validated or not key.startswith("val_")):
                row[key] = float(m[key])
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else float("nan")
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if trainer.is_global_zero:
            atomic_write_text(self.path, pd.DataFrame(self.rows).to_csv(index=False))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class EpochEarlyStopping(EarlyStopping):
    """Early stopping checked at the end of every training epoch, after its validation; the replayed end of the
    epoch a step-budget run resumed at is not checked again (it was checked before the checkpoint)."""

    @property
    def state_key(self) -> str:  # EarlyStopping's, so checkpoints saved with either resume with either
        return f"EarlyStopping{ {'monitor': self.monitor, 'mode': self.mode}!r}"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not _replayed_epoch_end(trainer):
            super().on_train_epoch_end(trainer, pl_module)


class BestWeights(pl.Callback):
    """Keep the weights of the best epoch (by ``monitor``) in ``best.safetensors``, surviving a resume."""

    def __init__(self, path: Path, monitor: str, mode: str):
        self.path = Path(path)
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None

    def _better(self, value: float) -> bool:
        if value != value:  # NaN never improves
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from safetensors.torch import save_file

        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not self._better(float(value)):
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch + 1
        if trainer.is_global_zero:
            state = {k: v.detach().to("cpu").contiguous() for k, v in pl_module.model.state_dict().items()}
            tmp = self.path.with_name(self.path.name + ".tmp")
            save_file(state, str(tmp))
            os.replace(tmp, self.path)

    def load_into(self, model: torch.nn.Module) -> bool:
        """Load the best weights into ``model``; False when no epoch was ever better than nothing."""
        from safetensors.torch import load_file

        if not self.path.is_file():
            return False
        model.load_state_dict(load_file(str(self.path)))
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict.get("best"), state_dict.get("best_epoch")


class AtomicLastCheckpoint(ModelCheckpoint):
    """Save ``last.ckpt`` every epoch through a temporary file and a rename: a kill never leaves half a file."""

    def __init__(self, dirpath: Path):
        super().__init__(
            dirpath=str(dirpath),
            filename="last",
            save_top_k=1,
            save_last=False,
            every_n_epochs=1,
            save_on_train_epoch_end=True,  # after History and BestWeights (checkpoint callbacks run last)
            enable_version_counter=False,
        )

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        tmp = filepath + ".tmp"
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if os.path.basename(filepath) != "last.ckpt":
            super()._remove_checkpoint(trainer, filepath)
