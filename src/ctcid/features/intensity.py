"""Fluorescence (and bright-field intensity) measurements inside masks, a stack ``[B, H, W]`` at a time.

Intensities are camera counts above the crop's background, the median of its border (3 px), so that
patients and runs with different background compare. Everything is computed with array reductions
over the whole stack.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["background_counts", "intensity_features", "masked_median", "noise_counts"]

BORDER_PX = 3


def _border_values(images: np.ndarray) -> np.ndarray:
    b, h, w = images.shape
    m = np.zeros((h, w), bool)
    m[:BORDER_PX], m[-BORDER_PX:], m[:, :BORDER_PX], m[:, -BORDER_PX:] = True, True, True, True
    return images.reshape(b, -1)[:, m.ravel()].astype(np.float32)


def background_counts(images: np.ndarray) -> np.ndarray:
    """Median of each crop's border, the background level (counts)."""
    return np.median(_border_values(images), axis=1)


def noise_counts(images: np.ndarray) -> np.ndarray:
    """Robust standard deviation (1.4826 x MAD) of each crop's border (counts)."""
    v = _border_values(images)
    return 1.4826 * np.median(np.abs(v - np.median(v, axis=1, keepdims=True)), axis=1)


def masked_median(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Median of ``values`` inside each mask of the stack (NaN for an empty mask)."""
    b = len(values)
    v = np.where(masks, values, np.inf).reshape(b, -1).astype(np.float32)
    n = masks.reshape(b, -1).sum(axis=1)
    v.sort(axis=1)
    lo = v[np.arange(b), np.maximum((n - 1) // 2, 0)]
    hi = v[np.arange(b), np.maximum(n // 2, 0)]
    return np.where(n > 0, (lo.astype(np.float64) + hi) / 2, np.nan)


def _masked_mean(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    n = masks.reshape(len(masks), -1).sum(axis=1)
    s = np.where(masks, values, 0.0).reshape(len(masks), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / n, np.nan)


def intensity_features(
    images: np.ndarray,
    cell: np.ndarray,
    pixel_size_um: float,
    ring_um: float = 1.0,
    background: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Intensity of one channel inside each cell mask.

    Returns ``background_counts`` and, above background: ``mean_counts``, ``median_counts``,
    ``max_counts``, ``std_counts``, ``integrated_counts_um2`` (sum times pixel area) and
    ``ring_interior_ratio``: the mean of the outer ring (``ring_um`` wide) over the mean of the rest, on
    raw counts (a membrane stain such as CD45 is well above 1, a cytoplasmic one near 1).
    ``background`` (counts per crop) defaults to :func:`background_counts` of ``images``.
    """
    px = float(pixel_size_um)
    b = len(images)
    raw = images.astype(np.float32)
    bg = background_counts(images) if background is None else np.asarray(background, np.float32)
    x = raw - bg[:, None, None]
    m = cell.astype(bool)
    n = m.reshape(b, -1).sum(axis=1)
    mean = _masked_mean(x, m)
    with np.errstate(invalid="ignore"):
        var = _masked_mean(x * x, m) - mean**2
    mx = np.where(m, x, -np.inf).reshape(b, -1).max(axis=1)
    interior = ndi.binary_erosion(m, structure=_disk_plane(ring_um / px), border_value=0)
    ring = m & ~interior
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = _masked_mean(raw, ring) / _masked_mean(raw, interior)
    return {
        "background_counts": bg.astype(np.float64),
        "mean_counts": mean,
        "median_counts": masked_median(x, m),
        "max_counts": np.where(n > 0, mx, np.nan),
        "std_counts": np.sqrt(np.maximum(var, 0.0)),
        "integrated_counts_um2": np.where(n > 0, np.where(m, x, 0.0).reshape(b, -1).sum(axis=1) * px * px, np.nan),
        "ring_interior_ratio": ratio,
    }


def _disk_plane(radius_px: float) -> np.ndarray:
    r = max(1, round(radius_px))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r + 0.5)[None]
