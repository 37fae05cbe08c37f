"""One row of hand-crafted features per cell: morphology, texture and intensity, with stable names and units.

Column names are ``<object>_<measure>_<unit>`` for morphology (``cell_area_um2``, ``nucleus_lobe_count``)
and ``<channel>_<measure>[_<unit>]`` per channel (``ck_mean_counts``, ``dapi_glcm_contrast_d2``,
``bf_lbp_u3``), with the channel name in lower case. :func:`feature_catalogue` lists every column with
its group, the channels it reads and its unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ConfigError, Options, option
from .intensity import background_counts, intensity_features, noise_counts
from .morphology import centroids_px, lobe_count, shape_features
from .texture import LBP_POINTS, glcm_features, intensity_entropy_bits, lbp_histogram, quantise

__all__ = ["FeatureConfig", "feature_catalogue", "measure_cells"]

_SHAPE = (
    ("area_um2", "um2"),
    ("perimeter_um", "um"),
    ("equivalent_diameter_um", "um"),
    ("circularity", "1"),
    ("eccentricity", "1"),
    ("solidity", "1"),
    ("major_axis_um", "um"),
    ("minor_axis_um", "um"),
)
_INTENSITY = (
    ("background_counts", "counts"),
    ("mean_counts", "counts"),
    ("median_counts", "counts"),
    ("max_counts", "counts"),
    ("std_counts", "counts"),
    ("integrated_counts_um2", "counts um2"),
    ("ring_interior_ratio", "1"),
)
_GLCM = ("contrast", "homogeneity", "energy", "correlation")


@dataclass
class FeatureConfig(Options):
    """Options of the feature measurements."""

    glcm_levels: int = option(
        16,
        help="Grey levels of the co-occurrence matrices (intensities quantised per cell inside its mask).",
        ge=2,
        le=256,
    )
    glcm_distances: list[int] = option(
        default_factory=lambda: [1, 2, 4],
        help="Pixel distances of the co-occurrence matrices; each feature is the mean over 4 angles (0-135 deg).",
    )
    ring_um: float = option(1.0, help="Width (um) of the membrane ring for <channel>_ring_interior_ratio.", gt=0)
    marker_ratio: list[str] = option(
        default_factory=lambda: ["CK", "CD45"],
        help="The two channels of <a>_<b>_ratio (CK over CD45: high for a CTC, low for a leukocyte).",
    )
    coverage_channel: str = option(
        "CK", help="Channel whose positive pixels give nucleus_<channel>_fraction (CK around or over the nucleus)."
    )
    coverage_snr: float = option(3.0, help="A pixel is positive above background + this x the border noise.", ge=0)
    lobe_core_fraction: float = option(
        0.55,
        help="Thickness fraction that separates nucleus lobes (ctcid.features.morphology.lobe_count).",
        gt=0,
        lt=1,
    )

    def __check__(self) -> None:
        if not self.glcm_distances or any(d < 1 for d in self.glcm_distances):
            raise ConfigError("glcm_distances", f"must be whole numbers >= 1, got {self.glcm_distances!r}")
        if len(self.marker_ratio) != 2:
            raise ConfigError("marker_ratio", f"names two channels, got {self.marker_ratio!r}")


def channel_key(name: str) -> str:
    """Column prefix of a channel: lower case, other characters as ``_`` (``CD45`` -> ``cd45``)."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "channel"


def feature_catalogue(channels: list[str], config: FeatureConfig | None = None) -> pd.DataFrame:
    """Every feature column: ``name``, ``group`` (morphology/texture/intensity), ``channels`` it reads
    (``;``-separated; morphology reads the segmentation) and ``unit``."""
    cfg = config or FeatureConfig()
    rows = []
    for obj in ("cell", "nucleus"):
        rows += [(f"{obj}_{m}", "morphology", "", u) for m, u in _SHAPE]
    rows += [
        ("nc_area_ratio", "morphology", "", "1"),
        ("nucleus_lobe_count", "morphology", "", "count"),
        ("nucleus_offset_um", "morphology", "", "um"),
    ]
    for ch in channels:
        k = channel_key(ch)
        rows += [(f"{k}_{m}", "intensity", ch, u) for m, u in _INTENSITY]
        rows += [(f"{k}_glcm_{p}_d{d}", "texture", ch, "1") for d in cfg.glcm_distances for p in _GLCM]
        rows += [(f"{k}_lbp_u{i}", "texture", ch, "fraction") for i in range(LBP_POINTS + 2)]
        rows += [(f"{k}_entropy_bits", "texture", ch, "bits")]
    a, b = cfg.marker_ratio
    if a in channels and b in channels:
        rows.append((f"{channel_key(a)}_{channel_key(b)}_ratio", "intensity", f"{a};{b}", "1"))
    if cfg.coverage_channel in channels:
        rows.append(
            (
                f"nucleus_{channel_key(cfg.coverage_channel)}_fraction",
                "intensity",
                cfg.coverage_channel,
                "fraction",
            )
        )
    return pd.DataFrame(rows, columns=["name", "group", "channels", "unit"])


def measure_cells(
    pixels: np.ndarray,
    masks: np.ndarray,
    channels: list[str],
    pixel_size_um: float,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Features of each crop from its pixels ``[B, C, H, W]`` and masks ``[B, H, W]`` (0/1 cytoplasm/2 nucleus).

    Returns one row per crop with the columns of :func:`feature_catalogue`, in that order; measures of an
    empty mask are NaN.
    """
    cfg = config or FeatureConfig()
    cfg.validate()
    if pixels.ndim != 4 or pixels.shape[1] != len(channels) or masks.shape != (pixels.shape[0], *pixels.shape[2:]):
        raise ValueError(f"pixels {pixels.shape} and masks {masks.shape} do not match {len(channels)} channels")
    px = float(pixel_size_um)
    cell = masks > 0
    nucleus = masks == 2
    cols: dict[str, np.ndarray] = {}
    cols.update(shape_features(cell, px, "cell"))
    cols.update(shape_features(nucleus, px, "nucleus"))
    with np.errstate(invalid="ignore", divide="ignore"):
        cyto = cols["cell_area_um2"] - cols["nucleus_area_um2"]
        cols["nc_area_ratio"] = np.where(cyto > 0, cols["nucleus_area_um2"] / cyto, np.nan)
    lobes = lobe_count(nucleus, cfg.lobe_core_fraction).astype(np.float64)
    cols["nucleus_lobe_count"] = np.where(nucleus.any(axis=(1, 2)), lobes, np.nan)
    offset = np.linalg.norm(centroids_px(cell) - centroids_px(nucleus), axis=1) * px
    cols["nucleus_offset_um"] = offset
    # intensity and texture read only the pixels near a cell: crop the block to the masks' joint extent
    # (plus the 1 px the LBP neighbours need), after the backgrounds have been taken from the full crop
    backgrounds = {ch: background_counts(pixels[:, i]) for i, ch in enumerate(channels)}
    noises = (
        {cfg.coverage_channel: noise_counts(pixels[:, channels.index(cfg.coverage_channel)])}
        if (cfg.coverage_channel in channels)
        else {}
    )
    rows, cols_any = np.flatnonzero(cell.any(axis=(0, 2))), np.flatnonzero(cell.any(axis=(0, 1)))
    if len(rows):
        h, w = cell.shape[1:]
        r0, r1 = max(0, rows[0] - 2), min(h, rows[-1] + 3)
        c0, c1 = max(0, cols_any[0] - 2), min(w, cols_any[-1] + 3)
        pixels, cell, nucleus = pixels[:, :, r0:r1, c0:c1], cell[:, r0:r1, c0:c1], nucleus[:, r0:r1, c0:c1]
    means = {}
    for i, ch in enumerate(channels):
        k = channel_key(ch)
        img = pixels[:, i]
        inten = intensity_features(img, cell, px, cfg.ring_um, backgrounds[ch])
        means[ch] = inten["mean_counts"]
        cols.update({f"{k}_{m}": v for m, v in inten.items()})
        q = quantise(img, cell, cfg.glcm_levels)
        cols.update(
            {f"{k}_{m}": v for m, v in glcm_features(q, cfg.glcm_levels, tuple(cfg.glcm_distances)).items()}
        )
        hist = lbp_histogram(img, cell)
        cols.update({f"{k}_lbp_u{j}": hist[:, j] for j in range(hist.shape[1])})
        cols[f"{k}_entropy_bits"] = intensity_entropy_bits(q, cfg.glcm_levels)
    a, b = cfg.marker_ratio
    if a in channels and b in channels:
        cols[f"{channel_key(a)}_{channel_key(b)}_ratio"] = np.maximum(means[a], 1.0) / np.maximum(means[b], 1.0)
    if cfg.coverage_channel in channels:
        img = pixels[:, channels.index(cfg.coverage_channel)].astype(np.float32)
        bg = cols[f"{channel_key(cfg.coverage_channel)}_background_counts"]
        thr = bg + cfg.coverage_snr * np.maximum(noises[cfg.coverage_channel], 1.0)
        pos = (img > thr[:, None, None]) & nucleus
        n = nucleus.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cols[f"nucleus_{channel_key(cfg.coverage_channel)}_fraction"] = np.where(
                n > 0, pos.sum(axis=(1, 2)) / n, np.nan
            )
    names = feature_catalogue(channels, cfg)["name"].tolist()
    return pd.DataFrame({n: np.asarray(cols[n], np.float32) for n in names})
