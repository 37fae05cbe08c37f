"""Cell panels for review: every channel of a cell side by side, then its saliency over bright field."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["cell_panel_png"]


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
