"""Shape measurements of binary masks, a stack ``[B, H, W]`` at a time.

Pure functions: masks in, one value per mask out, in micrometres where the name says so. Definitions
follow scikit-image's ``regionprops`` (moments, axes, eccentricity) and ``measure.perimeter`` (the
4-connected border weighted by its local pattern), so values agree with it; they are computed for the
whole stack with array operations instead of one region at a time.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "area_px",
    "axes_px",
    "centroids_px",
    "convex_area_px",
    "lobe_count",
    "perimeter_px",
    "shape_features",
]

_CROSS = np.zeros((3, 3, 3), bool)
_CROSS[1] = ndi.generate_binary_structure(2, 1)
_PERIMETER_KERNEL = np.array([[10, 2, 10], [2, 1, 2], [10, 2, 10]], np.int32)[None]
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0


def area_px(masks: np.ndarray) -> np.ndarray:
    """Pixel count of each mask."""
    return masks.reshape(len(masks), -1).sum(axis=1).astype(np.float64)


def perimeter_px(masks: np.ndarray) -> np.ndarray:
    """Perimeter (px) of each mask, as :func:`skimage.measure.perimeter` with 4-connectivity."""
    m = masks.astype(bool)
    border = (m & ~ndi.binary_erosion(m, structure=_CROSS, border_value=0)).astype(np.int32)
    code = ndi.convolve(border, _PERIMETER_KERNEL, mode="constant", cval=0)
    return _PERIMETER_WEIGHTS[np.minimum(code, 49)].reshape(len(m), -1).sum(axis=1)


def centroids_px(masks: np.ndarray) -> np.ndarray:
    """Centroid ``(row, col)`` of each mask, ``[B, 2]`` (NaN for an empty mask)."""
    _, h, w = masks.shape
    m = masks.astype(np.float64)
    n = m.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (m.sum(axis=2) @ np.arange(h)) / n
        c = (m.sum(axis=1) @ np.arange(w)) / n
    return np.stack([r, c], axis=1)


def axes_px(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Major and minor axis length (px) and eccentricity of the ellipse with the same second moments."""
    _, h, w = masks.shape
    m = masks.astype(np.float64)
    n = m.sum(axis=(1, 2))
    cen = centroids_px(masks)
    yy = np.arange(h)[None, :, None] - cen[:, 0, None, None]
    xx = np.arange(w)[None, None, :] - cen[:, 1, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (m * yy * yy).sum(axis=(1, 2)) / n
        c = (m * xx * xx).sum(axis=(1, 2)) / n
        bxy = (m * yy * xx).sum(axis=(1, 2)) / n
        root = np.sqrt(((a - c) / 2) ** 2 + bxy**2)
        l1 = (a + c) / 2 + root
        l2 = np.maximum((a + c) / 2 - root, 0.0)
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / np.where(l1 > 0, l1, 1), 0, 1)), 0.0)
    return 4 * np.sqrt(l1), 4 * np.sqrt(l2), np.where(n > 0, ecc, np.nan)


def convex_area_px(masks: np.ndarray) -> np.ndarray:
    """Area (px) of the convex hull of each mask's pixel squares (their corners), NaN when empty."""
    from scipy.spatial import ConvexHull, QhullError

    out = np.full(len(masks), np.nan)
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    edges = masks & ~ndi.binary_erosion(masks, structure=_CROSS, border_value=0)
    for i in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1)):
        pts = np.argwhere(edges[i]).astype(np.float64)
        pts = (pts[:, None, :] + corners[None]).reshape(-1, 2)
        try:
            out[i] = ConvexHull(pts).volume
        except QhullError:
            out[i] = float(masks[i].sum())
    return out


def lobe_count(masks: np.ndarray, core_fraction: float = 0.55) -> np.ndarray:
    """Number of lobes of each mask: the pieces left of it where it is thicker than ``core_fraction`` of its
    thickest point (distance to the background). A round nucleus has one; lobes joined by thin bridges
    count separately. 0 for an empty mask.
    """
    b = len(masks)
    if b == 0:
        return np.zeros(0, np.int64)
    dist = np.zeros(masks.shape, np.float64)
    m = masks.astype(bool)
    for i in np.flatnonzero(m.reshape(b, -1).any(axis=1)):
        dist[i] = ndi.distance_transform_edt(np.pad(m[i], 1))[1:-1, 1:-1]
    peak = dist.reshape(b, -1).max(axis=1)
    core = (dist >= core_fraction * peak[:, None, None]) & m & (peak[:, None, None] > 0)
    labels, n = ndi.label(core, structure=_CROSS)
    if n == 0:
        return np.zeros(b, np.int64)
    flat = labels.reshape(b, -1)
    rows, cols = np.nonzero(flat)
    plane = np.zeros(n + 1, np.int64)
    plane[flat[rows, cols]] = rows
    return np.bincount(plane[1:], minlength=b).astype(np.int64)


def shape_features(masks: np.ndarray, pixel_size_um: float, prefix: str) -> dict[str, np.ndarray]:
    """Area, perimeter, equivalent diameter, circularity, eccentricity, solidity and axes of each mask.

    Circularity is ``4 pi area / perimeter^2`` (1 for a disc, less for any other shape); solidity is the
    area over the area of the convex hull. Empty masks give NaN.
    """
    px = float(pixel_size_um)
    m = masks.astype(bool)
    area = area_px(m)
    per = perimeter_px(m)
    major, minor, ecc = axes_px(m)
    hull = convex_area_px(m)
    empty = area == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            f"{prefix}_area_um2": area * px * px,
            f"{prefix}_perimeter_um": per * px,
            f"{prefix}_equivalent_diameter_um": np.sqrt(4 * area / np.pi) * px,
            f"{prefix}_circularity": np.minimum(4 * np.pi * area / per**2, 1.0),
            f"{prefix}_eccentricity": ecc,
            f"{prefix}_solidity": np.minimum(area / hull, 1.0),
            f"{prefix}_major_axis_um": major * px,
            f"{prefix}_minor_axis_um": minor * px,
        }
    for v in out.values():
        v[empty] = np.nan
    return out
