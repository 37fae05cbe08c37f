"""Ground-truth cell and nucleus masks that travel with a dataset.

A synthetic export (``ctcid synth --masks``) holds ``masks.npy`` beside ``labels.csv``: uint8 ``[cells, H, W]``,
0 background, 1 cytoplasm, 2 nucleus, one mask per row of ``labels.csv`` in the same order. ``ctcid ingest``
carries them into the dataset as ``DATASET/truth/masks.npy``, one mask per row of the dataset's cell table
(matched by sample and cell id, so cells set aside at ingest or read in another order still line up) and
brought to the crop size the same way as the pixels (centre-padded with background or centre-cropped).
:func:`ctcid.synth.synth_dataset` writes the same file. ``ctcid explain`` scores its saliency maps against them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CtcidError
from .store import TABLE_FILE

__all__ = ["TRUTH_DIR", "TRUTH_MASKS", "carry_true_masks", "fit_masks", "load_true_masks", "write_true_masks"]

#: Folder of a dataset that holds the ground truth.
TRUTH_DIR = "truth"
#: The masks file, in the source export (beside ``labels.csv``) and in ``DATASET/truth/``.
TRUTH_MASKS = "masks.npy"
_CHUNK = 4096


def fit_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Bring masks ``[n, H, W]`` to ``[n, size, size]`` around their centre (as ingest fits the pixels in its
    ``pad`` mode): background added around smaller masks, larger ones cropped.

    Examples
    --------
    >>> m = np.ones((1, 2, 4), np.uint8)
    >>> fit_masks(m, 3)[0]
    array([[1, 1, 1],
           [1, 1, 1],
           [0, 0, 0]], dtype=uint8)
    """
    n, h, w = masks.shape
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    masks = masks[:, top : top + min(h, size), left : left + min(w, size)]
    h, w = masks.shape[1:]
    out = np.zeros((n, size, size), np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top : top + h, left : left + w] = masks
    return out


def write_true_masks(folder: str | os.PathLike[str], masks: np.ndarray) -> Path:
    """Write ``masks`` (uint8 ``[cells, H, W]`` in the order of the dataset's cells) into a dataset ``folder``."""
    path = Path(folder) / TRUTH_DIR / TRUTH_MASKS
    path.parent.mkdir(exist_ok=True)
    np.save(path, np.asarray(masks, np.uint8), allow_pickle=False)
    return path


def carry_true_masks(
    src: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    size: int,
    *,
    resized: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path | None:
    """Copy the ground-truth masks of export ``src`` (``masks.npy`` beside ``labels.csv``) into the dataset
    being written in ``folder`` (its cell table already there), one per dataset cell; ``None`` when the export
    has none, or when they cannot be matched (every dataset cell must be in ``labels.csv``; said through
    ``log``). Crops that ingest ``resized`` are not carried (a resampled label mask is not the truth)."""
    say = log or (lambda _msg: None)
    src = Path(src)
    masks_file, labels_file = src / TRUTH_MASKS, src / "labels.csv"
    if not (src.is_dir() and masks_file.is_file() and labels_file.is_file()):
        return None
    try:
        truth = np.load(masks_file, mmap_mode="r", allow_pickle=False)
        keys = pd.read_csv(labels_file, usecols=["sample_id", "cell_id"], dtype=str)
    except (ValueError, OSError) as exc:
        say(f"ground-truth masks not carried: {masks_file} cannot be read ({exc})")
        return None
    if truth.ndim != 3 or len(truth) != len(keys):
        say(f"ground-truth masks not carried: {masks_file} does not hold one mask per row of {labels_file.name}")
        return None
    if resized and truth.shape[1:] != (size, size):
        say("ground-truth masks not carried: the crops were resized")
        return None
    table = pd.read_parquet(Path(folder) / TABLE_FILE, columns=["sample_id", "cell_id"])
    index = pd.Series(np.arange(len(keys)), index=pd.MultiIndex.from_frame(keys[["sample_id", "cell_id"]]))
    wanted = pd.MultiIndex.from_arrays([table["sample_id"].astype(str), table["cell_id"].astype(str)])
    rows = index.reindex(wanted).to_numpy()
    if np.isnan(rows.astype(float)).any():
        say(f"ground-truth masks not carried: some cells are not in {labels_file}")
        return None
    rows = rows.astype(np.int64)
    path = Path(folder) / TRUTH_DIR / TRUTH_MASKS
    path.parent.mkdir(exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(rows), size, size))
    for lo in range(0, len(rows), _CHUNK):
        out[lo : lo + _CHUNK] = fit_masks(np.asarray(truth[rows[lo : lo + _CHUNK]], np.uint8), size)
    out.flush()
    del out
    say(f"ground-truth masks of {len(rows)} cells carried into {TRUTH_DIR}/{TRUTH_MASKS}")
    return path


def load_true_masks(ds: Any) -> np.ndarray | None:
    """The ground-truth masks of a dataset (``[cells, H, W]``, memory-mapped; 0/1/2), or ``None`` if it has
    none."""
    path = Path(ds.path) / TRUTH_DIR / TRUTH_MASKS
    if not path.is_file():
        return None
    masks = np.load(path, mmap_mode="r", allow_pickle=False)
    if masks.shape != (len(ds), *ds.crop_size):
        raise CtcidError(f"ground-truth masks have shape {masks.shape}, expected {(len(ds), *ds.crop_size)}", path)
    return masks
