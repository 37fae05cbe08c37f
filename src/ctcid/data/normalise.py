"""How each channel's intensities are scaled before a network sees them; the numbers travel with the bundle.

Normalisation happens on the device: ``(u16 - lo) / (hi - lo)`` with a per-channel percentile window (or a
flat-field division for bright field), then augmentation when training, then ``(x - mean) / std``, all with
per-sample parameters gathered by ``src`` (the dataset channel feeding each input channel).
"""

from __future__ import annotations

import numpy as np
import torch

from ..io import CellDataset

__all__ = [
    "BORDER_PX",
    "Normalizer",
    "border_median",
    "border_strips",
    "channel_normalisation",
    "stand_in_normalisation",
]


#: Width, in px, of the crop border whose median is a crop's background for ``flatfield`` channels.
BORDER_PX = 3


def border_strips(x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top, bottom, left and right strips, ``width`` px wide, of images ``x [..., H, W]``, each flattened to
    ``[..., n]`` (a corner pixel lies in two strips).

    >>> x = torch.arange(16.0).reshape(4, 4)
    >>> [s.tolist() for s in border_strips(x, 1)]
    [[0.0, 1.0, 2.0, 3.0], [12.0, 13.0, 14.0, 15.0], [0.0, 4.0, 8.0, 12.0], [3.0, 7.0, 11.0, 15.0]]
    """
    return (
        x[..., :width, :].flatten(-2),
        x[..., -width:, :].flatten(-2),
        x[..., :, :width].flatten(-2),
        x[..., :, -width:].flatten(-2),
    )


def border_median(x: torch.Tensor, width: int) -> torch.Tensor:
    """A crop's background: the median of its four :func:`border_strips` together, ``[..., H, W] -> [...]``.

    >>> x = torch.full((2, 1, 8, 8), 10.0)
    >>> x[1, :, 3:5, 3:5] = 90.0  # a bright cell inside the border leaves the background as it is
    >>> border_median(x, BORDER_PX).tolist()
    [[10.0], [10.0]]
    """
    return torch.cat(border_strips(x, width), dim=-1).median(dim=-1).values


def channel_normalisation(
    ds: CellDataset, channels: list[str], flatfield: list[str] | tuple[str, ...] = ()
) -> dict[str, dict[str, float | str]]:
    """How each channel is scaled; these numbers travel with the model bundle.

    ``window`` (fluorescence, where absolute intensity carries the signal: CK-positive, CD45-negative):
    the dataset-wide p0.1 .. p99.9 window, then the mean and std inside it, from the dataset header.
    ``flatfield`` (bright field, where intensity is relative to the illumination): each crop divided by
    its own background, the median of its border, so that illumination differences between patients,
    runs and cages vanish; the background sits at 0.5 and a contrast of 10% is one standard deviation.
    """
    out: dict[str, dict[str, float | str]] = {}
    for ch in channels:
        if ch in flatfield:
            out[ch] = {"mode": "flatfield", "lo": 0.0, "hi": 1.0, "mean": 0.5, "std": 0.05}
            continue
        st = ds.header["channel_stats"][ch]
        lo, hi = float(st["p0.1"]), float(st["p99.9"])
        hi = hi if hi > lo else lo + 1.0
        span = hi - lo
        out[ch] = {
            "mode": "window",
            "lo": lo,
            "hi": hi,
            "mean": (float(st["mean"]) - lo) / span,
            "std": max(float(st["std"]) / span, 1e-3),
        }
    return out


def stand_in_normalisation(
    ds: CellDataset,
    cells: np.ndarray,
    extra: str,
    target: str,
    norm: dict[str, dict[str, float | str]],
    flatfield: list[str] | tuple[str, ...] = (),
) -> tuple[dict[str, float | str], dict[str, float]]:
    """An extra training channel's window rescaled to look like the channel it stands in for.

    For a fluorescence channel standing in for bright field (System A's DAPI in training), the window is inverted
    and scaled so that the channel's background lands on bright field's background (0.5 after the flat-field
    division) and its brightest structure (the typical crop's 99th percentile) on bright field's darkest (the
    typical crop's 1st percentile): a DAPI nucleus then shows as the dark, textured nucleus bright field shows,
    with the contrast bright field has, measured on ``cells``. Returns the entry for ``extra`` (a window with
    ``lo > hi``, standardised as ``target``) and the measures. Any other pairing keeps the extra channel's own
    window.
    """
    if target not in flatfield or extra in flatfield:
        return dict(norm[extra]), {}
    cells = np.sort(np.asarray(cells, np.int64))
    pix = torch.from_numpy(ds.images(cells, [target, extra]).astype(np.float32))
    bf = pix[:, 0] * 0.5 / border_median(pix[:, :1], BORDER_PX).clamp(min=1.0)[:, 0, None, None]
    raw = pix[:, 1]
    # numpy's percentile: torch.quantile refuses inputs over 2**24 values (2,000 crops of 96 px)
    depth = float(np.median(0.5 - np.percentile(bf.flatten(1).numpy(), 1, axis=1)))
    background = border_median(raw[:, None], BORDER_PX)[:, 0].numpy()
    bright = np.percentile(raw.flatten(1).numpy(), 99, axis=1) - background
    raw_bg, raw_peak = float(np.median(background)), float(np.median(bright))
    depth = max(depth, 1e-3)
    raw_peak = max(raw_peak, 1.0)
    span = raw_peak / depth  # raw units per unit of the target's scaled intensity
    lo = raw_bg + 0.5 * span  # maps the background to 0.5 ...
    entry: dict[str, float | str] = {
        "mode": "window",
        "lo": lo,
        "hi": lo - span,  # ... and the peak to 0.5 - depth
        "mean": float(norm[target]["mean"]),
        "std": float(norm[target]["std"]),
    }
    measures = {"target_depth": depth, "extra_background": raw_bg, "extra_peak": raw_peak, "cells": len(cells)}
    return entry, measures


class Normalizer(torch.nn.Module):
    """Scale (window or flat-field) and standardise on the device, with per-sample source channels.

    ``table`` rows follow ``channels`` (a dataset's channel list); ``src`` is ``[B, C_in]`` indices
    into those rows. Channels without an entry in ``norm`` are left as they are.
    """

    def __init__(self, norm: dict[str, dict[str, float | str]], channels: list[str]):
        super().__init__()
        ident = {"lo": 0.0, "hi": 1.0, "mean": 0.0, "std": 1.0}  # channels the model never reads
        keys = ("lo", "hi", "mean", "std")
        rows = [
            [float(norm.get(c, ident)[k]) for k in keys] + [float(norm.get(c, ident).get("mode") == "flatfield")]
            for c in channels
        ]
        self.register_buffer("table", torch.tensor(rows, dtype=torch.float32), persistent=False)
        self.channels = list(channels)
        self.any_flat = bool(any(r[4] for r in rows))

    def window(self, pixels: torch.Tensor, src: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The windowed (or flat-field divided) float batch, written into ``out`` when given (a float32 tensor
        of the pixels' shape that may be reused between batches), else into a new tensor."""
        p = self.table[src]  # [B, C_in, 5]
        lo, hi = p[..., 0, None, None], p[..., 1, None, None]
        x = pixels.to(torch.float32, copy=True) if out is None else out.copy_(pixels)
        flat = p[..., 4] > 0 if self.any_flat else None  # [B, C_in]: flat-field images, by their own background
        xf = x[flat] if flat is not None and bool(flat.any()) else None  # a copy: [N, H, W]
        x.sub_(lo).div_(hi - lo)
        if xf is not None:
            background = border_median(xf, BORDER_PX).clamp(min=1.0)[..., None, None]
            x[flat] = xf.mul_(0.5).div_(background)
        return x

    def standardise(self, x: torch.Tensor, src: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``(x - mean) / std`` per sample and channel; ``inplace`` overwrites ``x``."""
        p = self.table[src]
        if inplace:
            return x.sub_(p[..., 2, None, None]).div_(p[..., 3, None, None])
        return (x - p[..., 2, None, None]) / p[..., 3, None, None]
