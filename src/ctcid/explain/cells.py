"""``ctcid explain``: why a bundle calls chosen cells what it does, one picture per cell."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CtcidError
from ..io import CellDataset, atomic_dir
from ..models import check_compatible, load_bundle
from ..predict import bundle_features, bundle_logits
from .features import cell_attributions
from .gradcam import cell_panel_png, gradcam_maps

__all__ = ["ExplainResult", "explain_cells"]


@dataclass
class ExplainResult:
    """What ``explain_cells`` wrote: the folder and one row per explained cell."""

    out: Path
    cells: pd.DataFrame


def _rows(bundle: object, ds: CellDataset, cells: list[str] | None, top: int) -> np.ndarray:
    if cells:
        ids = ds.table["cell_id"].astype(str).to_numpy()
        known = set(ids)
        missing = [c for c in cells if c not in known]
        if missing:
            raise CtcidError(f"no cell(s) {', '.join(missing[:5])} in the dataset", ds.path)
        return np.array([int(np.flatnonzero(ids == c)[0]) for c in cells])
    logits = bundle_logits(bundle, ds, np.arange(len(ds)), device="cpu")
    return np.argsort(-logits, kind="stable")[:top]


def explain_cells(
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cells: list[str] | None = None,
    top: int = 16,
    overwrite: bool = False,
) -> ExplainResult:
    """Explain ``cells`` (ids), or the ``top`` most CTC-like cells, of ``dataset``: one PNG per cell (every channel
    side by side, then the saliency over bright field for image models), ``saliency.npy`` ``[cells, H, W]``,
    ``cells.csv`` and, for feature models, ``feature_attributions.csv`` (logit units against the training mean)."""
    bundle = load_bundle(model)
    ds = CellDataset.open(dataset)
    check_compatible(bundle.meta, ds)
    rows = _rows(bundle, ds, cells, top)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saliency = gradcam_maps(bundle, ds, rows)
    pixels = ds.images(rows)
    p = bundle.meta.probabilities(bundle_logits(bundle, ds, rows, device="cpu"))
    table = ds.table.iloc[rows][["cell_id", "sample_id", "label"]].assign(p_ctc=p).reset_index(drop=True)
    with atomic_dir(out, overwrite) as tmp:
        for i, r in enumerate(rows):
            png = cell_panel_png(pixels[i], ds.channels, None if saliency is None else saliency[i])
            sample, cell = str(ds.table["sample_id"].iloc[r]), str(ds.table["cell_id"].iloc[r])
            (tmp / f"{cell if cell.startswith(sample) else f'{sample}_{cell}'}.png").write_bytes(png)
        if saliency is not None:
            np.save(tmp / "saliency.npy", saliency)
        feats = bundle_features(bundle.meta, ds)
        if feats is not None:
            attr = cell_attributions(bundle, ds, rows, feats)
            names = bundle.meta.features.names
            pd.concat([table, pd.DataFrame(attr, columns=names)], axis=1).to_csv(
                tmp / "feature_attributions.csv", index=False
            )
        table.to_csv(tmp / "cells.csv", index=False)
    return ExplainResult(Path(out), table)
