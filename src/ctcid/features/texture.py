"""Texture inside a mask, a stack of crops ``[B, H, W]`` at a time.

* Grey-level co-occurrence (Haralick): pixel pairs at a distance and angle, both inside the mask, counted
  into a symmetric, normalised matrix per crop with one ``bincount`` for the whole stack; contrast,
  homogeneity, energy and correlation as :func:`skimage.feature.graycoprops` defines them.
* Local binary patterns: scikit-image's rotation-invariant ``uniform`` code with 8 neighbours at radius 1
  (bilinear sampling), computed for the stack with shifted arrays, and its histogram inside the mask.
* Entropy (bits) of the quantised intensities inside the mask.

Intensities are quantised per crop over their range inside the mask, so texture does not depend on stain
brightness (fluorescence features measure that).
"""

from __future__ import annotations

import numpy as np

__all__ = ["glcm_features", "intensity_entropy_bits", "lbp_histogram", "lbp_uniform", "quantise"]

GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
LBP_POINTS = 8


def quantise(images: np.ndarray, masks: np.ndarray, levels: int) -> np.ndarray:
    """Grey levels ``0..levels-1`` over each crop's range inside its mask; -1 outside the mask."""
    x = images.astype(np.float32)
    b = len(x)
    inside = masks.astype(bool)
    lo = np.where(inside, x, np.inf).reshape(b, -1).min(axis=1)
    hi = np.where(inside, x, -np.inf).reshape(b, -1).max(axis=1)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.floor((x - lo[:, None, None]) / span[:, None, None] * levels).astype(np.int64)
    q = np.clip(q, 0, levels - 1)
    return np.where(inside, q, -1)


def _pairs(q: np.ndarray, dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = q.shape[1:]
    a = q[:, max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)]
    b = q[:, max(0, dr) : h + min(0, dr), max(0, dc) : w + min(0, dc)]
    return a, b


def glcm(q: np.ndarray, levels: int, distance: int, angle: float) -> np.ndarray:
    """Symmetric, normalised co-occurrence matrices ``[B, L, L]`` of quantised crops (``-1`` = outside)."""
    b = len(q)
    dr = round(np.sin(angle) * distance)
    dc = round(np.cos(angle) * distance)
    first, second = _pairs(q, dr, dc)
    ok = (first >= 0) & (second >= 0)
    plane = np.broadcast_to(np.arange(b)[:, None, None], ok.shape)[ok]
    code = (plane * levels + first[ok]) * levels + second[ok]
    p = np.bincount(code, minlength=b * levels * levels).reshape(b, levels, levels).astype(np.float64)
    p = p + p.transpose(0, 2, 1)
    total = p.sum(axis=(1, 2), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return p / total


def glcm_props(p: np.ndarray) -> dict[str, np.ndarray]:
    """Contrast, homogeneity, energy and correlation of normalised matrices ``[B, L, L]``."""
    levels = p.shape[-1]
    i = np.arange(levels, dtype=np.float64)[:, None]
    j = np.arange(levels, dtype=np.float64)[None, :]
    d2 = (i - j) ** 2
    mu_i = (p * i).sum(axis=(1, 2))
    mu_j = (p * j).sum(axis=(1, 2))
    sd_i = np.sqrt((p * (i - mu_i[:, None, None]) ** 2).sum(axis=(1, 2)))
    sd_j = np.sqrt((p * (j - mu_j[:, None, None]) ** 2).sum(axis=(1, 2)))
    cov = (p * (i - mu_i[:, None, None]) * (j - mu_j[:, None, None])).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where((sd_i < 1e-15) | (sd_j < 1e-15), 1.0, cov / (sd_i * sd_j))
    corr = np.where(np.isnan(mu_i), np.nan, corr)
    return {
        "contrast": (p * d2).sum(axis=(1, 2)),
        "homogeneity": (p / (1.0 + d2)).sum(axis=(1, 2)),
        "energy": np.sqrt((p**2).sum(axis=(1, 2))),
        "correlation": corr,
    }


def glcm_features(q: np.ndarray, levels: int, distances: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Haralick features at each distance, each the mean over four angles: ``glcm_<prop>_d<distance>``."""
    out: dict[str, np.ndarray] = {}
    for d in distances:
        props = [glcm_props(glcm(q, levels, d, a)) for a in GLCM_ANGLES]
        for name in props[0]:
            with np.errstate(invalid="ignore"):
                out[f"glcm_{name}_d{d}"] = np.mean([p[name] for p in props], axis=0)
    return out


def lbp_uniform(images: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP codes ``0..9`` (8 neighbours, radius 1), as scikit-image's
    ``local_binary_pattern(image, 8, 1, "uniform")`` for each crop of ``images [B, H, W]``."""
    x = images.astype(np.float64)
    _, h, w = x.shape
    pad = np.pad(x, ((0, 0), (2, 2), (2, 2)))  # outside the crop reads as 0, as in scikit-image

    def at(dr: int, dc: int) -> np.ndarray:
        return pad[:, 2 + dr : 2 + dr + h, 2 + dc : 2 + dc + w]

    ones = np.zeros(x.shape, np.int8)
    changes = np.zeros(x.shape, np.int8)
    prev = None
    for k in range(LBP_POINTS):
        rp = round(-np.sin(2 * np.pi * k / LBP_POINTS), 5)
        cp = round(np.cos(2 * np.pi * k / LBP_POINTS), 5)
        r0, c0 = int(np.floor(rp)), int(np.floor(cp))
        fr, fc = rp - r0, cp - c0
        if fr == 0 and fc == 0:
            val = at(r0, c0)
        else:  # scikit-image's bilinear interpolation, in its order of operations (ties matter)
            top = (1 - fc) * at(r0, c0) + fc * at(r0, c0 + 1)
            bottom = (1 - fc) * at(r0 + 1, c0) + fc * at(r0 + 1, c0 + 1)
            val = (1 - fr) * top + fr * bottom
        bit = val - x >= 0
        ones += bit
        if prev is not None:
            changes += bit != prev
        prev = bit
    return np.where(changes <= 2, ones, LBP_POINTS + 1).astype(np.int64)


def lbp_histogram(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Fraction of each uniform LBP code (``[B, 10]``) among the pixels inside each mask (NaN if empty)."""
    b = len(images)
    codes = lbp_uniform(images)
    inside = masks.astype(bool)
    plane = np.broadcast_to(np.arange(b)[:, None, None], inside.shape)[inside]
    nbins = LBP_POINTS + 2
    hist = np.bincount(plane * nbins + codes[inside], minlength=b * nbins).reshape(b, nbins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hist / hist.sum(axis=1, keepdims=True)


def intensity_entropy_bits(q: np.ndarray, levels: int) -> np.ndarray:
    """Shannon entropy (bits) of the quantised grey levels inside each mask (``q`` from :func:`quantise`)."""
    b = len(q)
    inside = q >= 0
    plane = np.broadcast_to(np.arange(b)[:, None, None], q.shape)[inside]
    hist = np.bincount(plane * levels + q[inside], minlength=b * levels).reshape(b, levels).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hist / hist.sum(axis=1, keepdims=True)
        return -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0.0)).sum(axis=1) + np.where(
            hist.sum(axis=1) > 0, 0.0, np.nan
        )
