"""``ctcid explain``: why a bundle calls chosen cells what it does, one picture per cell.

For image models the saliency maps (:mod:`ctcid.explain.saliency`) are scored against the cell and nucleus
masks and checked against a re-initialised model (:mod:`ctcid.explain.scores`); for a dual-branch model the
logit is split between its image and its measurements (:mod:`ctcid.explain.branches`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ..config import ConfigError
from ..errors import CtcidError
from ..io import CellDataset, atomic_dir
from ..models import check_compatible, load_bundle
from ..predict import bundle_features, bundle_inputs, bundle_logits
from .branches import branch_contributions
from .features import cell_attributions
from .panels import cell_panel_png
from .saliency import DEFAULT_METHOD, METHODS, bundle_maps, layer_grids, normalise_maps, randomised_model
from .scores import map_similarity, mask_scores, rank_similarity, reference_masks, summarise_scores

__all__ = ["EXPLAIN_FILE", "ExplainResult", "explain_cells", "explain_images", "select_cells"]

#: The summary ``ctcid explain`` writes.
EXPLAIN_FILE = "explain.json"


@dataclass
class ExplainResult:
    """What ``explain_cells`` wrote: the folder, one row per explained cell and the summary (``explain.json``)."""

    out: Path
    cells: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def select_cells(bundle: object, ds: CellDataset, cells: list[str] | None = None, top: int = 16) -> np.ndarray:
    """Dataset rows of the cells ``cells`` (ids), or of the ``top`` most CTC-like cells by the bundle's logit."""
    if cells:
        ids = ds.table["cell_id"].astype(str).to_numpy()
        known = set(ids)
        missing = [c for c in cells if c not in known]
        if missing:
            raise CtcidError(f"no cell(s) {', '.join(missing[:5])} in the dataset", ds.path)
        return np.array([int(np.flatnonzero(ids == c)[0]) for c in cells])
    logits = bundle_logits(bundle, ds, np.arange(len(ds)), device="cpu")
    return np.argsort(-logits, kind="stable")[:top]


def _check_layer(bundle: Any, method: str, layer: str) -> None:
    if method not in METHODS:
        raise ConfigError("method", f"must be one of {', '.join(METHODS)}, got {method!r}", "--method")
    if layer == "auto" or method not in ("gradcam", "guided_gradcam"):
        return
    try:
        bundle.model.get_submodule(layer)
    except AttributeError:
        meta = bundle.meta
        names = [n for n, _ in layer_grids(bundle.model, meta.input_size, len(meta.channels))]
        raise CtcidError(f"the model has no layer {layer!r}; try auto or one of {', '.join(names)}") from None


def explain_images(
    bundle: Any,
    ds: CellDataset,
    rows: np.ndarray,
    method: str = DEFAULT_METHOD,
    *,
    layer: str = "auto",
    seed: int = 0,
    compare: dict[str, nn.Module] | None = None,
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Saliency of an image bundle for dataset ``rows``: the maps shown (``[n, H, W]`` in [0, 1]), per-cell
    scores and the summary of ``explain.json``.

    The scores: localisation against the ground-truth masks of the dataset, else those of ``ctcid segment``
    (``masks`` says which; none without either); the randomisation similarity, the Spearman correlation of each
    map shown (its positive part) with the one of the same architecture re-initialised with ``seed``
    (:func:`ctcid.explain.scores.map_similarity`; ``_abs``: of the absolute maps); the same against every model of
    ``compare`` (``randomisation_similarity_<name>``); for a dual-branch model, the logit split between its inputs.
    """
    _check_layer(bundle, method, layer)
    meta = bundle.meta
    feeds = bundle_inputs(bundle, ds, rows)
    maps, used = bundle_maps(bundle, ds, rows, method, layer=layer, feeds=feeds)
    others = {"": randomised_model(bundle, seed), **{f"_{k}": m for k, m in (compare or {}).items()}}
    per_cell = pd.DataFrame(index=np.arange(len(rows)))
    for suffix, other in others.items():
        fresh, _ = bundle_maps(bundle, ds, rows, method, layer=used or "auto", model=other, feeds=feeds)
        per_cell[f"randomisation_similarity{suffix}"] = map_similarity(maps, fresh)
        if not suffix:
            per_cell["randomisation_similarity_abs"] = rank_similarity(np.abs(maps), np.abs(fresh))
    masks, source = reference_masks(ds, rows)
    if masks is not None:
        per_cell = pd.concat([mask_scores(maps, masks), per_cell], axis=1)
    grid = dict(layer_grids(bundle.model, meta.input_size, len(meta.channels))).get(used) if used else None
    summary: dict[str, Any] = {
        "method": method,
        "layer": used,
        "grid": list(grid) if grid else None,
        "input_size": meta.input_size,
        "cells": len(rows),
        "masks": source,
        "randomisation_seed": seed,
        **summarise_scores(per_cell),
    }
    if len(feeds) > 1 and hasattr(bundle.model, "scaler"):
        split = branch_contributions(bundle.model, feeds[0], feeds[1])
        per_cell = pd.concat([per_cell, split], axis=1)
        share = split["image_share"].to_numpy(np.float64)
        summary["image_share"] = round(float(np.nanmean(share)), 4) if np.isfinite(share).any() else None
    return normalise_maps(maps), per_cell, summary


def explain_cells(
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    cells: list[str] | None = None,
    top: int = 16,
    method: str = DEFAULT_METHOD,
    layer: str = "auto",
    seed: int = 0,
    overwrite: bool = False,
) -> ExplainResult:
    """Explain ``cells`` (ids), or the ``top`` most CTC-like cells, of ``dataset``.

    Writes one PNG per cell (every channel side by side, then the saliency over bright field for image models),
    ``cells.csv`` (with the per-cell scores), ``explain.json`` (:func:`explain_images`' summary) and, for image
    models, ``saliency.npy`` ``[cells, H, W]`` in [0, 1]; for feature models ``feature_attributions.csv`` (logit
    units against the training mean).
    """
    bundle = load_bundle(model)
    ds = CellDataset.open(dataset)
    check_compatible(bundle.meta, ds)
    rows = select_cells(bundle, ds, cells, top)
    p = bundle.meta.probabilities(bundle_logits(bundle, ds, rows, device="cpu"))
    table = ds.table.iloc[rows][["cell_id", "sample_id", "label"]].assign(p_ctc=p).reset_index(drop=True)
    saliency, summary = None, {"method": None, "layer": None, "cells": len(rows), "inputs": bundle.meta.inputs}
    if "image" in bundle.meta.inputs and isinstance(bundle.model, nn.Module):
        saliency, scores, summary = explain_images(bundle, ds, rows, method, layer=layer, seed=seed)
        table = pd.concat([table, scores], axis=1)
    pixels = ds.images(rows)
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
        (tmp / EXPLAIN_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return ExplainResult(Path(out), table, summary)
