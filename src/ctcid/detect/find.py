"""Find every cell in a whole frame: nuclei from the nuclear channel, cells from the membrane and cytoplasm
channels.

Classical, in a handful of whole-frame array passes; only the few objects holding two or more nuclei go through a
per-object watershed. The method:

1. **Background and noise.** Each channel used is smoothed (Gaussian, ``smooth_um``); its background is the
   25th percentile of blocks of about ``background_um`` (a median of neighbouring blocks, interpolated back to
   full size), so illumination vignetting and uneven background go; the robust spread (1.4826 x MAD) of the
   residual is the noise. Each channel becomes a signal-to-noise image.
2. **Foreground.** Nucleus: the nuclear channel above ``min_snr``. Cell: the nucleus or any cell channel (CK,
   CD45, ...) above ``min_snr``, closed over ``closing_um`` and with its holes filled (a CD45 ring becomes a
   disc).
3. **One event per nucleus.** Nucleus seeds are the maxima of the nuclear mask's distance transform (at half
   resolution); seeds closer than ``nucleus_separation_um``, or joined by a ridge that dips less than
   ``seed_dynamic_um``, are one nucleus (the lobes of a neutrophil, an irregular outline). An object holding two
   or more seeds (touching cells) is split: each nuclear pixel goes to its nearest seed, and the cytoplasm is
   shared by a watershed of the object's distance transform from those nuclei.
4. **Specks are noise.** An object smaller than ``min_area_um2``, or whose area at half its own peak is below
   ``min_core_area_um2`` in every channel (a point-like speck, whatever its brightness), is not an event.
5. **Flags** (never a reason to drop an event): ``edge`` (the event touches the frame border, so it is cut),
   ``touching`` (split from an object with two nuclei), ``clump`` (from one with ``clump_nuclei`` or more),
   ``debris`` (no nucleus, or one smaller than ``min_nucleus_area_um2``), ``saturated:<CH>`` (over 1% of the
   event's pixels at full scale).

The optional ``cellpose`` backend replaces steps 2-3 by Cellpose's labels (Stringer et al., Nature Methods
2021), run on the nuclear and the first cell channel, when the package and its weights are installed locally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.segmentation import watershed

from ..config import Options, option
from ..errors import CtcidError, arg

__all__ = ["BACKENDS", "EVENT_FLAGS", "FindConfig", "Found", "check_backend", "find_cells"]

#: Event QC flags (``saturated:<CH>`` is added per channel).
EVENT_FLAGS = ("edge", "touching", "clump", "debris")
#: Cell-finding backends.
BACKENDS = ("classical", "cellpose")


@dataclass
class FindConfig(Options):
    """Options of cell finding in frames (see the module docstring for the method)."""

    nucleus_channel: str = option("DAPI", help="The nuclear stain (DAPI, Hoechst).")
    cell_channels: list[str] = option(
        default_factory=lambda: ["CK", "CD45"],
        help="Channels whose signal marks a cell's cytoplasm or membrane (those present are used).",
    )
    smooth_um: float = option(0.8, help="Gaussian smoothing sigma (um).", ge=0, cli=False)
    background_um: float = option(40.0, help="Scale (um) of the background estimate.", gt=0, cli=False)
    min_snr: float = option(6.0, help="Threshold, in noise units of the smoothed, background-free image.", gt=0)
    closing_um: float = option(
        1.0,
        help="Radius (um) of the closing that joins a broken membrane ring before holes are filled.",
        ge=0,
        cli=False,
    )
    nucleus_separation_um: float = option(
        4.0, help="Nucleus seeds closer than this (um) are one nucleus.", gt=0, cli=False
    )
    seed_dynamic_um: float = option(
        1.0,
        help="Two seeds joined by a ridge of the nuclear distance transform that dips less than this (um) are one "
        "nucleus (an irregular outline); touching nuclei dip more.",
        ge=0,
        cli=False,
    )
    min_area_um2: float = option(20.0, help="Smallest event (um2).", ge=0)
    min_core_area_um2: float = option(
        15.0, help="Smallest area at half an event's own peak (um2); smaller is a speck.", ge=0, cli=False
    )
    min_nucleus_area_um2: float = option(
        12.0, help="A smaller nucleus (or none) flags the event debris (um2).", ge=0, cli=False
    )
    clump_nuclei: int = option(
        3,
        help="Objects holding this many nuclei or more flag their events clump (two: touching).",
        ge=2,
        cli=False,
    )
    backend: str = option(
        "classical", help="Cell finding: classical, or cellpose when installed.", choices=BACKENDS
    )
    cellpose_model: str = option(
        "cpsam", help="Cellpose model name (in Cellpose's local model folder) or path to its weights."
    )
    cellpose_diameter_um: float = option(12.0, help="Typical cell diameter for Cellpose (um).", gt=0, cli=False)


class Found(NamedTuple):
    """What :func:`find_cells` found in one frame.

    ``labels`` int32 ``[H, W]`` (0 background, event ``k`` at ``k``, events in row-then-column order of their
    centres), ``nucleus`` bool ``[H, W]`` and ``events`` (one row per event: ``label``, ``y_px``, ``x_px``,
    ``area_um2``, ``nucleus_area_um2``, ``flags``).
    """

    labels: np.ndarray
    nucleus: np.ndarray
    events: pd.DataFrame


# --------------------------------------------------------------------------------------------- background


def _interpolator(n: int, blocks: int, block: int) -> np.ndarray:
    """``[n, blocks]`` matrix of linear interpolation weights from block centres to ``n`` positions."""
    pos = np.clip((np.arange(n, dtype=np.float64) - (block - 1) / 2) / block, 0, blocks - 1)
    i0 = np.minimum(pos.astype(np.int64), blocks - 1)
    i1 = np.minimum(i0 + 1, blocks - 1)
    out = np.zeros((n, blocks), np.float32)
    np.add.at(out, (np.arange(n), i0), (1 - (pos - i0)).astype(np.float32))
    np.add.at(out, (np.arange(n), i1), (pos - i0).astype(np.float32))
    return out


def background(image: np.ndarray, block: int) -> np.ndarray:
    """Smooth background of a frame: the 25th percentile of ``block`` x ``block`` tiles, interpolated.

    Eight by eight samples of each tile are used; a 3 x 3 median over neighbouring tiles removes tiles that a
    large cell fills.

    Examples
    --------
    >>> img = np.full((64, 96), 100.0, np.float32)
    >>> img[20:30, 20:30] = 5000.0
    >>> float(background(img, 32).max())
    100.0
    """
    h, w = image.shape
    step = max(1, block // 8)
    sub = image[step // 2 :: step, step // 2 :: step]
    per = block // step
    hb, wb = -(-sub.shape[0] // per), -(-sub.shape[1] // per)
    sub = np.pad(sub, ((0, hb * per - sub.shape[0]), (0, wb * per - sub.shape[1])), mode="edge")
    tiles = sub.reshape(hb, per, wb, per).transpose(0, 2, 1, 3).reshape(hb, wb, per * per)
    grid = np.percentile(tiles, 25, axis=2).astype(np.float32)
    if min(hb, wb) >= 3:
        grid = ndi.median_filter(grid, size=3, mode="nearest")
    rows = _interpolator(h, hb, block) @ grid  # [h, wb]: along the rows, a small product
    pos = np.clip((np.arange(w, dtype=np.float32) - (block - 1) / 2) / block, 0, wb - 1)
    i0 = np.minimum(pos.astype(np.int64), wb - 1)
    out = rows[:, np.minimum(i0 + 1, wb - 1)]
    low = rows[:, i0]
    out -= low
    out *= pos - i0
    out += low
    return out


def signal_to_noise(plane: np.ndarray, sigma_px: float, block: int) -> np.ndarray:
    """A frame's channel smoothed, minus its :func:`background`, in units of its robust noise (float32)."""
    x = plane.astype(np.float32)
    if sigma_px > 0:
        x = ndi.gaussian_filter(x, sigma_px, mode="nearest", truncate=2.5)
    x -= background(x, block)
    sample = x[::5, ::5]
    med = float(np.median(sample))
    noise = max(1.4826 * float(np.median(np.abs(sample - med))), 1e-3)
    x *= np.float32(1.0 / noise)
    return x


# --------------------------------------------------------------------------------------------- seeds


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: background regions that do not reach the frame's border."""
    back, n = ndi.label(~mask)
    if n == 0:
        return mask
    outside = np.zeros(n + 1, bool)
    outside[np.concatenate([back[0], back[-1], back[:, 0], back[:, -1]])] = True
    outside[0] = True
    return mask | ~outside[back]


def _seeds(nucleus: np.ndarray, separation_px: float, dynamic_px: float) -> np.ndarray:
    """Seed points ``[k, 2]`` (row, col), one per nucleus: maxima of the nuclear mask's distance transform.

    The distance transform runs at half resolution (plenty for centres, four times cheaper). Maxima closer than
    ``separation_px`` are one nucleus (the lobes of a neutrophil), and so are two maxima joined by a ridge that
    never dips more than ``dynamic_px`` below the lower of them (an irregular nucleus, not two touching ones).
    """
    dist = ndi.distance_transform_edt(nucleus[::2, ::2]).astype(np.float32) * 2  # in full-resolution pixels
    size = 2 * max(1, round(separation_px / 4)) + 1
    peak = (dist == ndi.maximum_filter(dist, size=size)) & (dist >= 2.0)
    pts = np.argwhere(peak)
    if len(pts) == 0:
        return np.zeros((0, 2), np.int64)
    value = dist[pts[:, 0], pts[:, 1]]
    pairs = cKDTree(pts).query_pairs(2.0 * separation_px, output_type="ndarray")
    if len(pairs):
        a, b = pts[pairs[:, 0]], pts[pairs[:, 1]]
        gap = np.hypot(*(a - b).T) * 2
        t = np.linspace(0.0, 1.0, 17, dtype=np.float32)[None, :, None]
        line = np.rint(a[:, None] + (b - a)[:, None] * t).astype(np.int64)
        ridge = dist[line[..., 0], line[..., 1]].min(axis=1)
        low = np.minimum(value[pairs[:, 0]], value[pairs[:, 1]])
        pairs = pairs[(gap <= separation_px) | (ridge >= low - dynamic_px)]
    n = len(pts)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, which = connected_components(graph, directed=False)
    order = np.lexsort((-value, which))  # the deepest point of each group
    first = np.ones(n, bool)
    first[1:] = which[order][1:] != which[order][:-1]
    return pts[order[first]] * 2


def _split(cell: np.ndarray, nucleus: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Split ``cell`` (one object's box) among ``seeds`` (row, col in the box).

    Each nuclear pixel goes to its nearest seed (touching nuclei part at the bisector between their centres,
    the lobes of one nucleus stay together); the cytoplasm is then shared by a watershed of the object's
    distance transform from those nuclei.
    """
    markers = np.zeros(cell.shape, np.int32)
    ys, xs = np.nonzero(nucleus & cell)
    if len(ys):
        _, nearest = cKDTree(seeds).query(np.stack([ys, xs], axis=1))
        markers[ys, xs] = nearest + 1
    markers[seeds[:, 0], seeds[:, 1]] = np.arange(1, len(seeds) + 1)
    return watershed(-ndi.distance_transform_edt(cell), markers, mask=cell)


# --------------------------------------------------------------------------------------------- finding


def _classical(
    snr: dict[str, np.ndarray], cfg: FindConfig, px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event labels (not yet filtered), the nuclear mask, and the number of nuclei of each label's object."""
    nucleus = snr[cfg.nucleus_channel] > cfg.min_snr
    fg = nucleus.copy()
    for ch in cfg.cell_channels:
        if ch in snr:
            fg |= snr[ch] > cfg.min_snr
    r = round(cfg.closing_um / px)
    if r > 0:  # a square closing: two separable passes each way
        fg = ndi.minimum_filter(ndi.maximum_filter(fg.view(np.uint8), size=2 * r + 1), size=2 * r + 1) > 0
    fg = _fill_holes(fg)
    labels, n = ndi.label(fg)
    seeds = _seeds(nucleus, cfg.nucleus_separation_um / px, cfg.seed_dynamic_um / px)
    per_object = np.bincount(labels[seeds[:, 0], seeds[:, 1]], minlength=n + 1)
    per_object[0] = 0
    nuclei = per_object.copy()
    multi = np.flatnonzero(per_object >= 2)
    if multi.size:
        boxes = ndi.find_objects(labels)
        owner = labels[seeds[:, 0], seeds[:, 1]]
        next_id = n + 1
        extra = []
        for obj in multi:
            sl = boxes[obj - 1]
            cell = labels[sl] == obj
            own = seeds[owner == obj] - [sl[0].start, sl[1].start]
            parts = _split(cell, nucleus[sl], own)
            view = labels[sl]
            for j in range(2, len(own) + 1):
                view[parts == j] = next_id
                next_id += 1
            extra.append(np.full(len(own) - 1, per_object[obj]))
        nuclei = np.concatenate([nuclei, *extra])
    return labels, nucleus, nuclei


def _weights_path(model: str) -> Path | None:
    path = Path(model).expanduser()
    if path.is_file():
        return path
    home = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH") or str(Path.home() / ".cellpose" / "models")
    candidate = Path(home) / model
    return candidate if candidate.is_file() else None


def check_backend(cfg: FindConfig) -> None:
    """Refuse the ``cellpose`` backend, with what to install, when the package or its weights are missing here."""
    cfg.validate()
    if cfg.backend != "cellpose":
        return
    try:
        import cellpose.models  # noqa: F401
    except ImportError:
        raise CtcidError(
            f"{arg('backend', 'cellpose')} needs the cellpose package (pip install cellpose) and its model "
            "weights on this machine; ctcid never downloads weights"
        ) from None
    if _weights_path(cfg.cellpose_model) is None:
        raise CtcidError(
            f"cellpose weights {cfg.cellpose_model!r} are not on this machine (looked in "
            f"$CELLPOSE_LOCAL_MODELS_PATH or ~/.cellpose/models); copy them there or pass "
            f"{arg('cellpose_model', 'PATH')}; ctcid never downloads weights"
        )


_CELLPOSE: dict[str, Any] = {}


def _cellpose_labels(planes: dict[str, np.ndarray], cfg: FindConfig, px: float) -> np.ndarray:
    from cellpose import models

    key = str(_weights_path(cfg.cellpose_model))
    if key not in _CELLPOSE:
        _CELLPOSE.clear()
        _CELLPOSE[key] = models.CellposeModel(gpu=False, pretrained_model=key)
    cyto = next((planes[c] for c in cfg.cell_channels if c in planes), planes[cfg.nucleus_channel])
    image = np.stack([cyto, planes[cfg.nucleus_channel]], axis=-1).astype(np.float32)
    out = _CELLPOSE[key].eval(image, channel_axis=-1, diameter=cfg.cellpose_diameter_um / px)
    return np.asarray(out[0], dtype=np.int32)


def find_cells(
    planes: np.ndarray, channels: list[str], pixel_size_um: float, config: FindConfig | None = None
) -> Found:
    """Find the cells (events) of one frame.

    Parameters
    ----------
    planes
        The frame, ``[C, H, W]`` (uint16 or float).
    channels
        Names of the ``C`` channels; the nuclear channel must be among them.
    pixel_size_um
        Pixel size (um); sizes in ``config`` are in um.
    config
        :class:`FindConfig` (defaults when omitted).

    Returns
    -------
    Found
        Labels, nuclear mask and the event table (positions in pixels of this frame: ``x_px`` the column,
        ``y_px`` the row of the event's centroid).

    Examples
    --------
    >>> frame = np.full((2, 120, 160), 100, np.uint16)
    >>> yy, xx = np.mgrid[0:120, 0:160]
    >>> frame[0][(yy - 40) ** 2 + (xx - 50) ** 2 <= 36] = 3000      # a nucleus at row 40, column 50
    >>> frame[1][(yy - 40) ** 2 + (xx - 50) ** 2 <= 100] += 2000    # its cytoplasm
    >>> found = find_cells(frame, ["DAPI", "CK"], 0.64)
    >>> found.events[["y_px", "x_px"]].round(1).values.tolist()
    [[40.0, 50.0]]
    """
    cfg = config or FindConfig()
    cfg.validate()
    c = planes.shape[0]
    if c != len(channels):
        raise ValueError(f"{c} planes but {len(channels)} channel names")
    if cfg.nucleus_channel not in channels:
        raise CtcidError(
            f"the nuclear channel {cfg.nucleus_channel} is not among the channels ({', '.join(channels)}); "
            f"name the channels with {arg('channels', ...)} or set {arg('nucleus_channel', ...)}"
        )
    px = float(pixel_size_um)
    block = max(16, round(cfg.background_um / px / 8) * 8)
    used = [ch for ch in [cfg.nucleus_channel, *cfg.cell_channels] if ch in channels]
    snr = {ch: signal_to_noise(planes[channels.index(ch)], cfg.smooth_um / px, block) for ch in used}
    if cfg.backend == "cellpose":
        labels = _cellpose_labels({ch: planes[channels.index(ch)] for ch in used}, cfg, px)
        nucleus = snr[cfg.nucleus_channel] > cfg.min_snr
        nuclei = np.ones(int(labels.max()) + 1, np.int64)
    else:
        labels, nucleus, nuclei = _classical(snr, cfg, px)
    return _measure(labels, nucleus, nuclei, snr, planes, channels, cfg, px)


def _measure(
    labels: np.ndarray,
    nucleus: np.ndarray,
    nuclei: np.ndarray,
    snr: dict[str, np.ndarray],
    planes: np.ndarray,
    channels: list[str],
    cfg: FindConfig,
    px: float,
) -> Found:
    w = labels.shape[1]
    m = int(labels.max())
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    lab = flat[idx]
    area = np.bincount(lab, minlength=m + 1).astype(np.float64)
    cy = np.bincount(lab, weights=idx // w, minlength=m + 1) / np.maximum(area, 1)
    cx = np.bincount(lab, weights=idx % w, minlength=m + 1) / np.maximum(area, 1)
    nuc_area = np.bincount(lab, weights=nucleus.ravel()[idx], minlength=m + 1)
    core = np.zeros(m + 1)
    for values in snr.values():
        v = values.ravel()[idx]
        peak = np.full(m + 1, -np.inf, np.float32)
        np.maximum.at(peak, lab, v)
        half = np.bincount(lab, weights=v >= 0.5 * peak[lab], minlength=m + 1)
        core = np.maximum(core, np.where(peak >= 2 * cfg.min_snr, half, 0))  # where the object shows clearly
    a2 = px * px
    keep = (area * a2 >= cfg.min_area_um2) & (core * a2 >= cfg.min_core_area_um2)
    keep[0] = False
    ids = np.flatnonzero(keep)
    order = ids[np.lexsort((cx[ids], cy[ids]))]
    remap = np.zeros(m + 1, np.int32)
    remap[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    out = remap[labels]
    border = np.zeros(m + 1, bool)
    border[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    saturated = {}
    if planes.dtype == np.uint16:
        for i, ch in enumerate(channels):
            full = np.bincount(lab, weights=planes[i].ravel()[idx] == 65535, minlength=m + 1)
            saturated[ch] = full > 0.01 * area
    flags = []
    for k in order:
        f = []
        if border[k]:
            f.append("edge")
        if nuclei[k] >= cfg.clump_nuclei:
            f.append("clump")
        elif nuclei[k] == 2:
            f.append("touching")
        if nuc_area[k] * a2 < cfg.min_nucleus_area_um2:
            f.append("debris")
        f.extend(f"saturated:{ch}" for ch, s in saturated.items() if s[k])
        flags.append(";".join(f))
    events = pd.DataFrame(
        {
            "label": np.arange(1, len(order) + 1, dtype=np.int32),
            "y_px": cy[order],
            "x_px": cx[order],
            "area_um2": area[order] * a2,
            "nucleus_area_um2": nuc_area[order] * a2,
            "core_area_um2": core[order] * a2,
            "flags": flags,
        }
    )
    return Found(out, nucleus & (out > 0), events)
