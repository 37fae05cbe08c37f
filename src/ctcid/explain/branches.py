"""Which branch of a dual-branch model decided: the logit split between the image and the measurements."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["branch_contributions"]


def branch_contributions(model: Any, images: np.ndarray, features: np.ndarray, n_steps: int = 32) -> pd.DataFrame:
    """Integrated gradients of a dual-branch ``model``'s logit split by input, per cell.

    The path runs from a baseline cell (a blank image, 0 after standardisation, and the training mean of every
    feature, stored in the model's feature scaler) to the cell, through both inputs at once; by completeness
    ``logit_image + logit_features = logit - baseline_logit``. ``image_share`` is
    ``|logit_image| / (|logit_image| + |logit_features|)``: near 1 the image decided, near 0 the measurements.
    Missing features are set to the baseline (what the model sees for them).
    """
    from captum.attr import IntegratedGradients

    model = model.cpu().eval()
    base_f = model.scaler.mean.detach().cpu().numpy().astype(np.float32)
    f = np.where(np.isfinite(features), features, base_f[None, :]).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    ft = torch.from_numpy(f)
    bx, bf = torch.zeros_like(x), torch.from_numpy(np.broadcast_to(base_f, f.shape).copy())

    def forward(img: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return model(img, feat).reshape(-1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a_img, a_feat = IntegratedGradients(forward).attribute((x, ft), baselines=(bx, bf), n_steps=n_steps)
        with torch.no_grad():
            logit, base = forward(x, ft).numpy(), forward(bx, bf).numpy()
    img = a_img.detach().sum(dim=(1, 2, 3)).numpy().astype(np.float64)
    feat = a_feat.detach().sum(dim=1).numpy().astype(np.float64)
    total = np.abs(img) + np.abs(feat)
    share = np.divide(np.abs(img), total, out=np.full_like(total, np.nan), where=total > 0)
    return pd.DataFrame(
        {
            "logit": logit,
            "baseline_logit": base,
            "logit_image": img,
            "logit_features": feat,
            "image_share": share,
        }
    )
