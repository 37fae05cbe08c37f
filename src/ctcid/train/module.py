"""The Lightning module: one logit per cell, normalisation and augmentation on the device."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import Normalizer, prepare_batch

__all__ = ["CTCClassifier", "focal_loss"]


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, pos_weight: float = 1.0) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017), mean over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p = torch.sigmoid(logits)
    pt = torch.where(y > 0.5, p, 1 - p)
    w = torch.where(y > 0.5, torch.full_like(y, pos_weight), torch.ones_like(y))
    return (w * (1 - pt).pow(gamma) * bce).mean()


class CTCClassifier(pl.LightningModule):
    """Wraps any image model: ``pixels uint16 -> window -> augment (training) -> standardise -> logit``.

    Parameters
    ----------
    model
        An ``nn.Module`` mapping ``[B, C_in, S, S]`` to ``[B, 1]``.
    normalizer
        Window/standardise parameters over the *source* channels of the dataset.
    augment
        A :class:`ctcid.augment.BatchAugment` (or ``None``); it also resizes to the input size.
    input_size
        Model input size; evaluation batches are resized to it when the crop differs.
    """

    def __init__(
        self,
        model: nn.Module,
        normalizer: Normalizer,
        augment: nn.Module | None,
        *,
        input_size: int,
        lr: float,
        weight_decay: float,
        loss: str,
        pos_weight: float,
        focal_gamma: float,
        seed: int,
        channels_last: bool = False,
    ):
        super().__init__()
        self.model = model
        self.normalizer = normalizer
        self.augment = augment
        self.input_size = input_size
        self.lr, self.weight_decay = lr, weight_decay
        self.loss_name, self.pos_weight, self.focal_gamma = loss, pos_weight, focal_gamma
        self.seed = seed
        self.channels_last = channels_last
        self.inputs = tuple(getattr(model, "inputs", ("image",)))
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.val_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ data on the device
    def prepare(self, batch: dict[str, torch.Tensor], *, train: bool, batch_idx: int = 0) -> torch.Tensor:
        augment, gen = None, None
        if train and self.augment is not None:
            augment = self.augment
            gen = torch.Generator(device=batch["pixels"].device)
            gen.manual_seed(
                int(np.random.SeedSequence([self.seed, self.current_epoch, batch_idx]).generate_state(1)[0])
            )
        return prepare_batch(
            batch["pixels"],
            batch["src"],
            self.normalizer,
            input_size=self.input_size,
            augment=augment,
            generator=gen,
            channels_last=self.channels_last,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).reshape(-1)

    def logits(self, batch: dict[str, torch.Tensor], *, train: bool, batch_idx: int = 0) -> torch.Tensor:
        """One logit per cell of the batch, from the inputs the model reads (images, features or both)."""
        args = []
        if "image" in self.inputs:
            args.append(self.prepare(batch, train=train, batch_idx=batch_idx))
        if "features" in self.inputs:
            args.append(batch["features"])
        return self.model(*args).reshape(-1)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.loss_name == "focal":
            return focal_loss(logits, y, self.focal_gamma, self.pos_weight)
        pw = torch.tensor(self.pos_weight if self.loss_name == "weighted_bce" else 1.0, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.augment is not None:
            self.augment.train()
        loss = self._loss(self.logits(batch, train=True, batch_idx=batch_idx), batch["y"])
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["y"]),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._val.append((self.logits(batch, train=False).float().detach(), batch["y"]))

    def on_validation_epoch_end(self) -> None:
        from sklearn.metrics import average_precision_score

        from ..evaluate import threshold_max_f1

        if not self._val:
            return
        logits = torch.cat([v[0] for v in self._val])
        y = torch.cat([v[1] for v in self._val])
        self._val.clear()
        loss = F.binary_cross_entropy_with_logits(logits, y).item()
        yy, pp = y.cpu().numpy(), torch.sigmoid(logits).cpu().numpy()
        pr_auc = float(average_precision_score(yy, pp)) if 0 < yy.sum() < len(yy) else float("nan")
        t = threshold_max_f1(yy, pp)
        pred = pp >= t
        tp = float((pred & (yy == 1)).sum())
        f1 = 2 * tp / max(1.0, float(pred.sum() + (yy == 1).sum()))
        self.val_metrics = {"val_loss": loss, "val_pr_auc": pr_auc, "val_f1": f1}
        for k, v in self.val_metrics.items():
            self.log(k, v, prog_bar=k != "val_loss", sync_dist=False)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.lr, total_steps=max(1, self.trainer.estimated_stepping_batches), pct_start=0.15
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
