"""Grad-CAM saliency of image models (CNN and dual-branch) with captum, and cell panels for review.

The saliency of a cell is captum's ``LayerGradCam`` at the backbone's last convolution, for the CTC logit,
upsampled to the crop, rectified and scaled to [0, 1] per cell: bright where the evidence for "CTC" lies.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io import CellDataset

__all__ = ["cell_panel_png", "gradcam_maps", "last_conv"]


def last_conv(model: nn.Module) -> nn.Module:
    """The last 2-D convolution of a network (the layer Grad-CAM reads)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no 2-D convolution")
    return convs[-1]


def gradcam_maps(bundle: Any, ds: CellDataset, cells: np.ndarray, batch_size: int = 64) -> np.ndarray | None:
    """Saliency ``[n, H, W]`` in [0, 1] (crop size) for ``cells``; ``None`` for a model without images."""
    import torch.nn.functional as F
    from captum.attr import LayerGradCam

    from ..predict import bundle_inputs

    meta = bundle.meta
    if "image" not in meta.inputs or not isinstance(bundle.model, nn.Module):
        return None
    model = bundle.model.cpu().eval()
    cells = np.asarray(cells, np.int64)
    feeds = bundle_inputs(bundle, ds, cells)
    h, w = ds.crop_size
    layer = last_conv(model.cnn if hasattr(model, "cnn") else model)
    out = np.zeros((len(cells), h, w), np.float32)
    for lo in range(0, len(cells), batch_size):
        x = torch.from_numpy(feeds[0][lo : lo + batch_size]).requires_grad_(True)
        extra = (torch.from_numpy(feeds[1][lo : lo + batch_size]),) if len(feeds) > 1 else ()

        def forward(img: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
            return model(img, *more).reshape(-1, 1)

        cam = LayerGradCam(forward, layer).attribute(x, target=0, additional_forward_args=extra or None)
        cam = F.interpolate(cam.detach(), size=(h, w), mode="bilinear", align_corners=False)[:, 0].clamp(min=0)
        peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12)[:, None, None]
        out[lo : lo + len(cam)] = (cam / peak).numpy()
    return out


def _display(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane, [1, 99.5])
    return np.clip((plane.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)


def cell_panel_png(
    pixels: np.ndarray, channels: list[str], saliency: np.ndarray | None = None, scale: int = 2
) -> bytes:
    """PNG of one cell: every channel side by side (each scaled to its own 1-99.5 percentiles), then the
    saliency over bright field when given."""
    from PIL import Image

    tiles = [_display(p) for p in pixels]
    rgb = [np.repeat(t[..., None], 3, axis=2) for t in tiles]
    if saliency is not None:
        base = tiles[channels.index("BF")] if "BF" in channels else tiles[0]
        heat = np.stack([saliency, 0.25 * saliency, 1 - saliency], axis=-1)
        a = 0.45 * saliency[..., None]
        rgb.append((1 - a) * np.repeat(base[..., None], 3, axis=2) + a * heat)
    sep = np.ones((pixels.shape[1], 2, 3), np.float32)
    row = np.concatenate([x for t in rgb for x in (t, sep)][:-1], axis=1)
    img = Image.fromarray((row * 255).astype(np.uint8)).resize(
        (row.shape[1] * scale, row.shape[0] * scale), Image.Resampling.NEAREST
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
