"""Classical segmentation of single-cell crops: the whole cell and its nucleus, a batch of crops at a time.

Every step runs on a stack ``[B, H, W]`` with in-plane structuring elements (scipy.ndimage treats the
stack as a 3-D array whose first axis never connects), so the cost is a handful of array passes per
block, not a Python loop per crop. Only the few crops where two objects touch go through a per-crop
marker-controlled watershed.

The method, per crop:

1. **Background and noise.** A plane fitted (least squares) to the crop's border is the background of
   each channel; after Gaussian smoothing, the robust spread (1.4826 x MAD) of the border residual is the
   noise. Each channel becomes a signal-to-noise image.
2. **Cell foreground.** Bright field is a phase image: a cell shows as a dark rim or bright halo with a
   textured interior, so its score is the absolute deviation from the background. Fluorescence channels
   (CK, CD45, ...) score their positive deviation. Each score is thresholded (Otsu or Li, never below
   ``min_snr``), the union is closed, its holes are filled, it is eroded by half a rim's width
   (``outline_inset_um``) and opened.
3. **One cell.** Connected objects are labelled; the one nearest the crop centre is the cell. When it
   holds two or more separate nuclei (touching cells), a watershed on its distance transform, seeded by
   the nuclei, splits it and the part whose nucleus is nearest the centre is kept.
4. **Nucleus.** DAPI above its threshold inside the cell, holes filled, small specks dropped. Without a
   DAPI channel, the darker class (Otsu) of the bright-field image inside the cell.

Masks use the synthetic generator's convention: 0 background, 1 cytoplasm, 2 nucleus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..config import Options, option
from ..errors import CtcidError

__all__ = ["SEG_FLAGS", "SegmentConfig", "otsu_thresholds", "segment_cells"]

#: QC flags a crop can receive from segmentation.
SEG_FLAGS = ("seg_no_cell", "seg_no_nucleus", "seg_cell_at_border", "seg_cell_small", "seg_nucleus_from_bf")

#: Width (px) of the crop border that defines the background plane and the noise.
BORDER_PX = 3


@dataclass
class SegmentConfig(Options):
    """Options of the classical segmentation (see the module docstring for the method)."""

    nucleus_channel: str = option(
        "DAPI",
        help="Channel of the nuclear stain; when the dataset lacks it, the nucleus comes from bright field.",
    )
    bf_channel: str = option("BF", help="The bright-field channel.", cli=False)
    cell_channels: list[str] = option(
        default_factory=lambda: ["BF", "CK", "CD45"],
        help="Channels whose signal marks the whole cell (those present in the dataset are used).",
        cli=False,
    )
    smooth_um: float = option(0.6, help="Gaussian smoothing sigma (um) before thresholding.", ge=0, cli=False)
    threshold: str = option("otsu", help="Threshold per crop and channel: otsu or li.", choices=("otsu", "li"))
    min_snr: float = option(
        5.0, help="Lowest threshold, in noise units of the smoothed image; keeps empty crops empty.", cli=False
    )
    closing_um: float = option(
        1.3, help="Radius (um) of the closing that joins a broken rim before holes are filled.", ge=0, cli=False
    )
    outline_inset_um: float = option(
        1.2,
        help="Erosion (um) of the filled cell: a thresholded rim (bright field's dark rim or halo, CD45's ring) "
        "is as wide as the blur, and the cell's outline lies at its middle, not its outer edge.",
        ge=0,
        cli=False,
    )
    merge_nuclei_um: float = option(
        1.3,
        help="Nucleus fragments closer than this (um) count as one nucleus (a neutrophil's lobes).",
        ge=0,
        cli=False,
    )
    min_cell_area_um2: float = option(
        20.0, help="Smaller objects are noise; a smaller cell is flagged seg_cell_small.", ge=0, cli=False
    )
    min_nucleus_area_um2: float = option(3.0, help="Smaller nucleus objects are noise.", ge=0, cli=False)
    max_offset_fraction: float = option(
        0.25,
        help="The cell must come within this fraction of the crop size of the crop centre.",
        gt=0,
        le=0.5,
        cli=False,
    )
    split_touching: bool = option(True, help="Split touching cells with a seeded watershed.", cli=False)


def _disk(radius_px: float) -> np.ndarray:
    r = max(0, round(radius_px))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r + 0.5)[None]  # [1, k, k]: in-plane only


_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = ndi.generate_binary_structure(2, 1)
_PLANE8 = np.zeros((3, 3, 3), bool)
_PLANE8[1] = True


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes of each plane of ``mask [B, H, W]``."""
    padded = np.pad(mask, ((1, 1), (0, 0), (0, 0)))
    return ndi.binary_fill_holes(padded, structure=_PLANE)[1:-1]


def _border(h: int, w: int, width: int = BORDER_PX) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[:width], m[-width:], m[:, :width], m[:, -width:] = True, True, True, True
    return m


def signal_to_noise(images: np.ndarray, sigma_px: float) -> np.ndarray:
    """``[B, H, W]`` images minus their border plane, smoothed, in units of the border's robust noise."""
    b, h, w = images.shape
    x = images.astype(np.float32)
    border = _border(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    design = np.stack([np.ones(h * w, np.float32), yy.ravel() / h - 0.5, xx.ravel() / w - 0.5], axis=1)
    pinv = np.linalg.pinv(design[border.ravel()])  # [3, n_border]
    coef = x.reshape(b, -1)[:, border.ravel()] @ pinv.T  # [B, 3]
    resid = x - (coef @ design.T).reshape(b, h, w)
    if sigma_px > 0:
        resid = ndi.gaussian_filter(resid, sigma=(0, sigma_px, sigma_px), mode="nearest")
    edge = resid[:, border]
    mad = np.median(np.abs(edge - np.median(edge, axis=1, keepdims=True)), axis=1)
    noise = np.maximum(1.4826 * mad, 1e-3)
    return resid / noise[:, None, None]


def otsu_thresholds(values: np.ndarray, bins: int = 128) -> np.ndarray:
    """Otsu's threshold of each row of ``values [B, P]`` (histogram over each row's own range)."""
    v = np.asarray(values, np.float32)
    b = len(v)
    lo, hi = v.min(axis=1), v.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    idx = np.clip(((v - lo[:, None]) * (bins / span)[:, None]).astype(np.int64), 0, bins - 1)
    idx += (np.arange(b) * bins)[:, None]
    hist = np.bincount(idx.ravel(), minlength=b * bins).reshape(b, bins).astype(np.float64)
    centres = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(hist, axis=1)
    w1 = w0[:, -1:] - w0
    m0 = np.cumsum(hist * centres, axis=1)
    mean0 = m0 / np.maximum(w0, 1e-12)
    mean1 = (m0[:, -1:] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    k = np.argmax(between[:, :-1], axis=1)
    return lo + (k + 1) / bins * span


def _thresholds(score: np.ndarray, method: str, floor: float) -> np.ndarray:
    flat = score.reshape(len(score), -1)
    if method == "li":
        from skimage.filters import threshold_li

        t = np.array([threshold_li(row) if row.max() > row.min() else row.max() for row in flat])
    else:
        t = otsu_thresholds(flat)
    return np.maximum(t, floor)


def _label_planes(labels: np.ndarray, n: int) -> np.ndarray:
    """Plane (crop) of each label ``1..n`` of an in-plane labelling of ``[B, H, W]`` (index 0 unused)."""
    flat = labels.reshape(len(labels), -1)
    planes = np.zeros(n + 1, np.int64)
    rows, cols = np.nonzero(flat)
    planes[flat[rows, cols]] = rows
    return planes


def _nearest_component(labels: np.ndarray, n: int, max_dist: float) -> np.ndarray:
    """Label (or 0) of the object nearest the centre of each plane of ``labels [B, H, W]``."""
    b, h, w = labels.shape
    out = np.zeros(b, np.int64)
    if n == 0:
        return out
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2).ravel()
    flat = labels.reshape(b, -1)
    rows, cols = np.nonzero(flat)
    lab = flat[rows, cols]
    dmin = np.full(n + 1, np.inf)
    np.minimum.at(dmin, lab, dist[cols])
    plane = np.zeros(n + 1, np.int64)
    plane[lab] = rows
    ids = np.arange(1, n + 1)
    ok = dmin[1:] <= max_dist
    ids, d, pl = ids[ok], dmin[1:][ok], plane[1:][ok]
    order = np.lexsort((d, pl))
    first = np.ones(len(order), bool)
    first[1:] = pl[order][1:] != pl[order][:-1]
    out[pl[order][first]] = ids[order][first]
    return out


def _split_touching(cell: np.ndarray, nuclei: np.ndarray, min_area: float) -> np.ndarray:
    """Watershed ``cell`` (one crop) seeded by separate ``nuclei``; keep the part nearest the centre."""
    from skimage.segmentation import watershed

    markers, n = ndi.label(nuclei & cell)
    if n < 2:
        return cell
    sizes = np.bincount(markers.ravel(), minlength=n + 1)
    small = sizes < min_area
    small[0] = False
    markers[small[markers]] = 0
    if (sizes[1:] >= min_area).sum() < 2:
        return cell
    parts = watershed(-ndi.distance_transform_edt(cell), markers, mask=cell)
    h, w = cell.shape
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    ids = np.unique(parts[parts > 0])
    best = ids[np.argmin(ndi.minimum(dist, parts, ids))]
    return parts == best


def segment_cells(
    pixels: np.ndarray, channels: list[str], pixel_size_um: float, config: SegmentConfig | None = None
) -> tuple[np.ndarray, list[str]]:
    """Segment the central cell and its nucleus in each crop.

    Parameters
    ----------
    pixels
        uint16 (or float) crops ``[B, C, H, W]``.
    channels
        Names of the ``C`` channels.
    pixel_size_um
        Pixel size (um); sizes in ``config`` are in um.
    config
        :class:`SegmentConfig` (defaults when omitted).

    Returns
    -------
    masks : numpy.ndarray
        uint8 ``[B, H, W]``: 0 background, 1 cytoplasm, 2 nucleus.
    flags : list of str
        ``;``-separated QC flags per crop (:data:`SEG_FLAGS`), empty when clean.
    """
    cfg = config or SegmentConfig()
    cfg.validate()
    b, c, h, w = pixels.shape
    if c != len(channels):
        raise ValueError(f"{c} channels in pixels but {len(channels)} names")
    px = float(pixel_size_um)
    cell_ch = [ch for ch in cfg.cell_channels if ch in channels]
    has_dapi = cfg.nucleus_channel in channels
    if not cell_ch and not has_dapi:
        raise CtcidError(
            f"segmentation needs one of the channels {', '.join([*cfg.cell_channels, cfg.nucleus_channel])}; "
            f"the dataset has {', '.join(channels)}"
        )
    masks = np.zeros((b, h, w), np.uint8)
    if b == 0:
        return masks, []

    snr = {
        ch: signal_to_noise(pixels[:, channels.index(ch)], cfg.smooth_um / px)
        for ch in {*cell_ch, cfg.nucleus_channel}
        if ch in channels
    }
    fg, nuc_fg = _foreground(snr, cell_ch, cfg, px)
    cell = _central_cell(fg, cfg)
    if nuc_fg is not None:
        if cfg.split_touching:
            _split_touching_cells(cell, nuc_fg, cfg, px)
        nucleus = nuc_fg & cell
    else:
        nucleus = _nucleus_from_bf(cell, snr.get(cfg.bf_channel))
    nucleus = _clean_nucleus(nucleus, cell, cfg.min_nucleus_area_um2 / (px * px))
    masks[cell] = 1
    masks[nucleus] = 2
    return masks, _qc_flags(cell, nucleus, px, cfg.min_cell_area_um2, has_dapi)


def _foreground(
    snr: dict[str, np.ndarray], cell_ch: list[str], cfg: SegmentConfig, px: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cell foreground ``[B, H, W]`` (step 2 of the method) and, with a nuclear channel, the nuclear foreground.

    Each channel's score (bright field: absolute deviation; fluorescence: positive deviation) is thresholded;
    the union is closed, filled, eroded by the outline inset and opened.
    """
    b, h, w = next(iter(snr.values())).shape
    fg = np.zeros((b, h, w), bool)
    for ch in cell_ch:
        score = np.abs(snr[ch]) if ch == cfg.bf_channel else snr[ch]
        fg |= score > _thresholds(score, cfg.threshold, cfg.min_snr)[:, None, None]
    nuc_fg = None
    if cfg.nucleus_channel in snr:
        dapi = snr[cfg.nucleus_channel]
        nuc_fg = dapi > _thresholds(dapi, cfg.threshold, cfg.min_snr)[:, None, None]
        fg |= nuc_fg
    fg = ndi.binary_closing(fg, structure=_disk(cfg.closing_um / px), border_value=0)
    fg = _fill_holes(fg)
    if cfg.outline_inset_um > 0:
        fg = ndi.binary_erosion(fg, structure=_disk(cfg.outline_inset_um / px))
    fg = ndi.binary_opening(fg, structure=_disk(1))
    return fg, nuc_fg


def _central_cell(fg: np.ndarray, cfg: SegmentConfig) -> np.ndarray:
    """The object of ``fg [B, H, W]`` nearest each crop's centre (within ``max_offset_fraction``), or nothing."""
    h, w = fg.shape[1:]
    labels, n = ndi.label(fg, structure=_PLANE)
    chosen = _nearest_component(labels, n, cfg.max_offset_fraction * max(h, w))
    return (labels == chosen[:, None, None]) & (chosen[:, None, None] > 0)


def _split_touching_cells(cell: np.ndarray, nuc_fg: np.ndarray, cfg: SegmentConfig, px: float) -> None:
    """In place: where a crop's cell holds two or more separate nuclei, keep only its part nearest the centre.

    Nucleus fragments closer than ``merge_nuclei_um`` count as one nucleus.
    """
    merged = ndi.binary_dilation(nuc_fg, structure=_disk(cfg.merge_nuclei_um / px / 2))
    nlab, nn = ndi.label(merged & cell, structure=_PLANE)
    if nn:
        per_plane = np.bincount(_label_planes(nlab, nn)[1:], minlength=len(cell))
        for i in np.flatnonzero(per_plane >= 2):
            cell[i] = _split_touching(cell[i], merged[i], cfg.min_nucleus_area_um2 / (px * px))


def _nucleus_from_bf(cell: np.ndarray, bf: np.ndarray | None) -> np.ndarray:
    """Without a nuclear stain: the darker class (Otsu) of the bright-field signal ``bf`` inside each cell."""
    b = len(cell)
    nucleus = np.zeros_like(cell)
    if bf is None:
        return nucleus
    inside = np.where(cell, bf, np.nan).reshape(b, -1)
    has = cell.reshape(b, -1).any(axis=1)
    if has.any():
        vals = np.where(np.isnan(inside[has]), np.nanmedian(inside[has], axis=1, keepdims=True), inside[has])
        t = np.full(b, -np.inf)
        t[has] = otsu_thresholds(vals)
        nucleus = cell & (bf < t[:, None, None])
        nucleus = ndi.binary_opening(nucleus, structure=_disk(1))
    return nucleus


def _clean_nucleus(nucleus: np.ndarray, cell: np.ndarray, min_area_px: float) -> np.ndarray:
    """Close and fill the nucleus, keep it inside the cell, and drop objects smaller than ``min_area_px``."""
    nucleus = _fill_holes(ndi.binary_closing(nucleus, structure=_disk(1), border_value=0)) & cell
    nlab, nn = ndi.label(nucleus, structure=_PLANE)
    if nn:
        sizes = np.bincount(nlab.ravel(), minlength=nn + 1)
        keep = sizes >= min_area_px
        keep[0] = False
        nucleus = keep[nlab]
    return nucleus


def _qc_flags(
    cell: np.ndarray, nucleus: np.ndarray, px: float, min_cell_area_um2: float, has_dapi: bool
) -> list[str]:
    """The ``;``-separated :data:`SEG_FLAGS` of each crop."""
    cell_area = cell.sum(axis=(1, 2)) * (px * px)
    nuc_area = nucleus.sum(axis=(1, 2))
    edge = (
        cell[:, 0].any(axis=1) | cell[:, -1].any(axis=1) | cell[:, :, 0].any(axis=1) | cell[:, :, -1].any(axis=1)
    )
    flags = []
    for i in range(len(cell)):
        f = []
        if cell_area[i] == 0:
            f.append("seg_no_cell")
        else:
            if nuc_area[i] == 0:
                f.append("seg_no_nucleus")
            if edge[i]:
                f.append("seg_cell_at_border")
            if cell_area[i] < min_cell_area_um2:
                f.append("seg_cell_small")
            if not has_dapi:
                f.append("seg_nucleus_from_bf")
        flags.append(";".join(f))
    return flags
