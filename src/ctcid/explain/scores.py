"""How good a saliency map is: scored against cell and nucleus masks, and checked against a destroyed model.

* **Localisation**: ``mass_in_cell``, the share of a map's positive mass inside the cell mask, and the
  ``pointing_game``, whether the map's maximum lies inside it (Zhang et al., 2018, without a tolerance); the same
  for the nucleus. A map spread evenly scores the mask's share of the crop (``cell_area_fraction``): the chance
  level to beat.
* **Randomisation** (Adebayo et al., NeurIPS 2018, "Sanity checks for saliency maps"): the Spearman rank
  correlation between a cell's signed map from the trained model and from the same architecture with
  re-initialised weights. Near 1, the method explains the image (edges, intensity), not the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["map_similarity", "mask_scores", "rank_similarity", "reference_masks", "summarise_scores"]


def mask_scores(maps: np.ndarray, masks: np.ndarray) -> pd.DataFrame:
    """Per-cell localisation of signed ``maps`` ``[n, H, W]`` against ``masks`` ``[n, H, W]`` (0 background,
    1 cytoplasm, 2 nucleus): ``mass_in_cell``, ``pointing``, ``mass_in_nucleus``, ``pointing_nucleus`` (NaN for a
    map without positive part) and the masks' shares of the crop.

    Examples
    --------
    >>> maps = np.zeros((1, 4, 4)); maps[0, 0, 0] = 3.0; maps[0, 3, 3] = 1.0
    >>> masks = np.zeros((1, 4, 4), np.uint8); masks[0, :2, :2] = 1; masks[0, 0, 0] = 2
    >>> mask_scores(maps, masks).iloc[0].round(3).to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'mass_in_cell': 0.75, 'pointing': 1.0, 'mass_in_nucleus': 0.75, 'pointing_nucleus': 1.0,
     'cell_area_fraction': 0.25, 'nucleus_area_fraction': 0.062}
    """
    pos = np.clip(np.asarray(maps, np.float64), 0, None).reshape(len(maps), -1)
    m = np.asarray(masks).reshape(len(masks), -1)
    total = pos.sum(axis=1)
    empty = total <= 0
    peak = pos.argmax(axis=1)
    out = {}
    for name, region in (("cell", m > 0), ("nucleus", m == 2)):
        mass = (pos * region).sum(axis=1) / np.where(empty, 1.0, total)
        hit = region[np.arange(len(m)), peak].astype(np.float64)
        out[f"mass_in_{name}"] = np.where(empty, np.nan, mass)
        out["pointing" if name == "cell" else "pointing_nucleus"] = np.where(empty, np.nan, hit)
    out["cell_area_fraction"] = (m > 0).mean(axis=1)
    out["nucleus_area_fraction"] = (m == 2).mean(axis=1)
    return pd.DataFrame(out)


def rank_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between ``a[i]`` and ``b[i]`` (maps ``[n, H, W]``); NaN where a map is flat.

    Examples
    --------
    >>> x = np.arange(8.0).reshape(2, 2, 2)
    >>> rank_similarity(x, x ** 3).tolist(), rank_similarity(x, -x).tolist()
    ([1.0, 1.0], [-1.0, -1.0])
    """
    from scipy.stats import rankdata

    ra = rankdata(np.asarray(a, np.float64).reshape(len(a), -1), axis=1)
    rb = rankdata(np.asarray(b, np.float64).reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def map_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The randomisation similarity of maps as shown: :func:`rank_similarity` of their positive parts, 0 where one
    map shows nothing (no positive part) and the other does, NaN where neither does.

    Examples
    --------
    >>> a = np.arange(8.0).reshape(2, 2, 2)
    >>> map_similarity(a, np.stack([a[0], -a[1]])).tolist()
    [1.0, 0.0]
    """
    pa, pb = np.clip(a, 0, None), np.clip(b, 0, None)
    out = rank_similarity(pa, pb)
    flat_a = pa.reshape(len(pa), -1).max(axis=1) <= 0
    flat_b = pb.reshape(len(pb), -1).max(axis=1) <= 0
    return np.where(flat_a ^ flat_b, 0.0, out)


def reference_masks(ds: Any, rows: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Masks to score maps against, for dataset ``rows``: the ground truth (``truth``, carried at ingest) when the
    dataset has it, else the masks of ``ctcid segment`` (``segmentation``), else none."""
    from ..features import load_segmentation
    from ..io import load_true_masks

    rows = np.asarray(rows, np.int64)
    truth = load_true_masks(ds)
    if truth is not None:
        return np.asarray(truth[rows]), "truth"
    if (ds.path / "segmentation" / "segmentation.json").is_file():
        return np.asarray(load_segmentation(ds).masks[rows]), "segmentation"
    return None, None


def summarise_scores(cells: pd.DataFrame) -> dict[str, float | int | None]:
    """Means over cells (NaN ignored) of the per-cell scores present in ``cells``, rounded; ``None`` when no cell
    has one."""
    out: dict[str, float | int | None] = {}
    names = {
        "mass_in_cell": "mass_in_cell",
        "pointing": "pointing_game",
        "mass_in_nucleus": "mass_in_nucleus",
        "pointing_nucleus": "pointing_game_nucleus",
        "cell_area_fraction": "cell_area_fraction",
        "nucleus_area_fraction": "nucleus_area_fraction",
    }
    names.update({c: c for c in cells.columns if str(c).startswith("randomisation_similarity")})
    for col, key in names.items():
        if col in cells:
            v = pd.to_numeric(cells[col], errors="coerce").to_numpy(np.float64)
            out[key] = round(float(np.nanmean(v)), 4) if np.isfinite(v).any() else None
    return out
