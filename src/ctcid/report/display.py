"""Fixed display windows: every cell of a dataset shown with the same intensity scale per channel.

Scaling each crop to its own percentiles (auto-contrast) makes a CD45-negative cell's background noise look
like a bright texture, and a faint CK signal look as strong as a bright one. Here each channel has one window
for the whole dataset, taken from the intensity statistics in its header (``dataset.json`` ``channel_stats``):

- fluorescence: black at the channel's median (the background that fills most of a crop), white at its
  99.9th percentile, so a stain reads as absent, weak or strong the same way on every cell;
- bright field (flat-field channels): a fixed width around each crop's own border median, so a cell's contrast
  against its background is comparable while slow illumination changes between fields are taken out.

Examples
--------
>>> import numpy as np
>>> stats = {"BF": {"p0.1": 100.0, "p50": 500.0, "p99.9": 900.0}, "CK": {"p50": 10.0, "p99.9": 110.0}}
>>> win = fixed_window(stats, ["BF", "CK"])
>>> win.low.tolist(), win.high.tolist(), win.flatfield.tolist()
([-400.0, 10.0], [400.0, 110.0], [True, False])
>>> cell = np.full((2, 4, 4), 60, np.uint16); cell[0] = 500; cell[0, 1:3, 1:3] = 300
>>> to_display(cell, win)[:, 1, 1].tolist()   # BF: 200 below its border median; CK: half-way up its window
[63, 127]
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DisplayWindows", "fixed_window", "panel_png", "to_display"]


@dataclass(frozen=True)
class DisplayWindows:
    """One intensity window per channel (see :func:`fixed_window`).

    Attributes
    ----------
    channels
        Channel names, in the order of the crops' channel axis.
    low, high
        ``[C]`` float64: the intensities shown black and white. For a flat-field channel they are offsets from
        each crop's border median instead of absolute intensities.
    flatfield
        ``[C]`` bool: which channels are windowed around each crop's border median.
    """

    channels: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    flatfield: np.ndarray


def fixed_window(
    channel_stats: Mapping[str, Mapping[str, float]],
    channels: Sequence[str],
    *,
    low: str = "p50",
    high: str = "p99.9",
    flatfield: Sequence[str] = ("BF",),
) -> DisplayWindows:
    """The display window of each channel from a dataset's intensity statistics.

    Parameters
    ----------
    channel_stats
        ``dataset.json``'s ``channel_stats`` (``ds.header["channel_stats"]``): per channel ``mean``, ``std``,
        ``min``, ``max`` and percentiles ``p0.1``, ``p1``, ``p50``, ``p99``, ``p99.9``.
    channels
        The channels to window, in the crops' order.
    low, high
        The statistics shown black and white for fluorescence channels. The default black level is the median
        (background), so the crop's background is black and any stain above it is visible.
    flatfield
        Channels windowed around each crop's border median (bright field): the window is
        ``± max(p50 - p0.1, p99.9 - p50)`` of the dataset, the same width for every crop.

    Returns
    -------
    DisplayWindows
        A channel without statistics (an empty dataset) gets the full 16-bit range.

    Examples
    --------
    >>> w = fixed_window({"DAPI": {"p1": 5.0, "p50": 20.0, "p99.9": 220.0}}, ["DAPI"], low="p1")
    >>> float(w.low[0]), float(w.high[0]), bool(w.flatfield[0])
    (5.0, 220.0, False)
    """
    lo = np.zeros(len(channels))
    hi = np.full(len(channels), 65535.0)
    flat = np.array([c in set(flatfield) for c in channels], dtype=bool)
    for i, ch in enumerate(channels):
        st = channel_stats.get(ch) or {}
        if flat[i]:
            mid = st.get("p50")
            if mid is None:
                lo[i], hi[i] = -32768.0, 32767.0
                continue
            half = max(mid - st.get("p0.1", st.get("min", mid)), st.get("p99.9", st.get("max", mid)) - mid, 1.0)
            lo[i], hi[i] = -half, half
        else:
            a, b = st.get(low), st.get(high)
            if a is None or b is None:
                continue
            lo[i], hi[i] = float(a), float(b) if b > a else float(a) + 1.0
    return DisplayWindows(tuple(channels), lo, hi, flat)


def _border_median(planes: np.ndarray) -> np.ndarray:
    """Median of the one-pixel border of each plane ``[..., H, W]`` -> ``[...]``."""
    border = np.concatenate(
        [planes[..., 0, :], planes[..., -1, :], planes[..., 1:-1, 0], planes[..., 1:-1, -1]], axis=-1
    )
    return np.median(border, axis=-1)


def to_display(pixels: np.ndarray, windows: DisplayWindows) -> np.ndarray:
    """Crops ``[n, C, H, W]`` (or one crop ``[C, H, W]``) to uint8 through the fixed windows; no input is changed.

    Examples
    --------
    >>> w = DisplayWindows(("CK",), np.array([100.0]), np.array([200.0]), np.array([False]))
    >>> to_display(np.array([[[50, 150, 250]]], np.uint16), w).tolist()
    [[[0, 127, 255]]]
    """
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 3 and x.ndim != 4:
        raise ValueError(f"expected crops [n, C, H, W] or [C, H, W], got shape {x.shape}")
    if x.shape[-3] != len(windows.channels):
        raise ValueError(f"{x.shape[-3]} channels in the crops, {len(windows.channels)} windows")
    shape = (len(windows.channels), 1, 1)
    low = windows.low.reshape(shape).astype(np.float32)
    high = windows.high.reshape(shape).astype(np.float32)
    if windows.flatfield.any():
        offset = np.zeros(x.shape[:-2], np.float32)
        offset[..., windows.flatfield] = _border_median(x[..., windows.flatfield, :, :])
        x = x - offset[..., None, None]
    out = (x - low) * (255.0 / (high - low))
    return np.clip(out, 0, 255).astype(np.uint8)


def panel_png(
    pixels: np.ndarray,
    windows: DisplayWindows,
    saliency: np.ndarray | None = None,
    *,
    scale: int = 2,
    compress_level: int = 1,
) -> bytes:
    """PNG of one cell: every channel side by side through the fixed windows, then the saliency when given.

    Parameters
    ----------
    pixels
        One crop, uint16 ``[C, H, W]``.
    windows
        :func:`fixed_window` of the dataset.
    saliency
        ``[H, W]`` in [0, 1]: drawn as a heat overlay on bright field (the first channel when there is none).
    scale
        Integer zoom (nearest neighbour, so pixels stay pixels).
    compress_level
        zlib level: 1 is several times faster than the default and only slightly larger.

    Examples
    --------
    >>> w = fixed_window({}, ["BF", "CK"])
    >>> png = panel_png(np.zeros((2, 8, 8), np.uint16), w, scale=1)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    from PIL import Image

    tiles = to_display(pixels, windows)
    gap = np.full((tiles.shape[-2], 2, 3), 255, np.uint8)
    parts = []
    for t in tiles:
        parts += [np.repeat(t[..., None], 3, axis=2), gap]
    if saliency is not None:
        s = np.clip(np.asarray(saliency, np.float32), 0.0, 1.0)
        names = list(windows.channels)
        base = tiles[names.index("BF") if "BF" in names else 0].astype(np.float32) / 255.0
        heat = np.stack([s, 0.25 * s, 1.0 - s], axis=-1)
        a = 0.45 * s[..., None]
        parts += [(255 * ((1 - a) * base[..., None] + a * heat)).astype(np.uint8), gap]
    row = np.concatenate(parts[:-1], axis=1)
    if scale > 1:
        row = np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(row).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
