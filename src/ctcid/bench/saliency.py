"""``ctcid bench saliency``: does each saliency method point at the cell, and does it explain the model?

For every model and method, the ``top`` most CTC-like cells of a dataset with ground-truth masks
(``ctcid synth --masks`` then ``ctcid ingest``) are explained exactly as ``ctcid explain`` does
(:func:`ctcid.explain.explain_images`) and scored: ``mass_in_cell`` and ``pointing_game`` (and the same for the
nucleus), against the chance level ``cell_area_fraction``; ``randomisation_similarity``, the Spearman correlation
of each map with the one of the same architecture re-initialised (Adebayo et al., 2018); and
``cascade_similarity``, the same with only the weights above the automatic Grad-CAM layer re-initialised (the
later stages and the head): a stricter check, since a map that stays the same there shows the image as the lower
layers see it, whatever the model decided.

The default method (:data:`ctcid.explain.DEFAULT_METHOD`) is the one :func:`choose_default` picks from this table.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TARGETS", "bench_saliency", "choose_default", "markdown_table"]

#: What a method must reach on every model: (score, lower bound or None, upper bound or None).
TARGETS = (("mass_in_cell", 0.6, None), ("pointing_game", 0.9, None), ("randomisation_similarity", None, 0.5))
_COLUMNS = (
    "mass_in_cell",
    "pointing_game",
    "mass_in_nucleus",
    "pointing_game_nucleus",
    "cell_area_fraction",
    "randomisation_similarity",
    "randomisation_similarity_abs",
    "cascade_similarity",
    "seconds_per_cell",
)


def _passes(row: dict[str, Any]) -> bool:
    for key, lo, hi in TARGETS:
        v = row.get(key)
        if v is None or (lo is not None and v < lo) or (hi is not None and v > hi):
            return False
    return True


def choose_default(rows: list[dict[str, Any]]) -> str | None:
    """The method that meets :data:`TARGETS` on every model; among those, one whose maps also change when only
    the top of the model is re-initialised (``cascade_similarity`` <= 0.5 on every model) if any, then the highest
    mean ``mass_in_cell``. ``None`` when no method meets the targets.

    >>> rows = [{"method": "a", "mass_in_cell": 0.9, "pointing_game": 1.0, "randomisation_similarity": 0.1,
    ...          "cascade_similarity": 0.8},
    ...         {"method": "b", "mass_in_cell": 0.7, "pointing_game": 1.0, "randomisation_similarity": 0.1,
    ...          "cascade_similarity": 0.3}]
    >>> choose_default(rows)
    'b'
    """
    methods = sorted({r["method"] for r in rows})
    ok = [m for m in methods if all(_passes(r) for r in rows if r["method"] == m)]
    if not ok:
        return None

    def rank(m: str) -> tuple[bool, float]:
        mine = [r for r in rows if r["method"] == m]
        strict = all((r.get("cascade_similarity") or 0.0) <= 0.5 for r in mine)
        return strict, float(np.mean([r["mass_in_cell"] for r in mine]))

    return max(ok, key=rank)


def markdown_table(result: dict[str, Any]) -> str:
    """The benchmark's rows as a Markdown table, one row per model and method."""
    head = ["model", "method", "layer", *_COLUMNS, "meets targets"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["model"], r["method"], r.get("layer") or "-"]
        cells += ["-" if r.get(c) is None else f"{r[c]:.3f}" for c in _COLUMNS]
        cells.append("yes" if _passes(r) else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _model_rows(
    name: str, path: Path, ds: Any, methods: tuple[str, ...], top: int, seed: int, log: Any
) -> list[dict[str, Any]]:
    from ..explain import choose_layer, explain_images, randomised_model, select_cells
    from ..models import check_compatible, load_bundle

    bundle = load_bundle(path)
    check_compatible(bundle.meta, ds)
    rows = select_cells(bundle, ds, None, top)
    meta = bundle.meta
    above = choose_layer(bundle.model, meta.input_size, len(meta.channels))
    cascade = randomised_model(bundle, seed, above=above)
    out = []
    for method in methods:
        log(f"{name}: {method} on {len(rows)} cells ...")
        t0 = time.perf_counter()
        _, _, summary = explain_images(bundle, ds, rows, method, seed=seed, compare={"cascade": cascade})
        seconds = time.perf_counter() - t0
        row = {"model": name, "path": str(path), "channels": meta.channels, **summary}
        row["cascade_similarity"] = row.pop("randomisation_similarity_cascade", None)
        row["cascade_above"] = above
        row["labelled_ctc_share"] = float((ds.table["label"].iloc[rows] == "ctc").mean())
        row["seconds_per_cell"] = round(seconds / max(1, len(rows)), 4)
        out.append(row)
    return out


def bench_saliency(
    dataset: str | os.PathLike[str],
    models: dict[str, str | os.PathLike[str]],
    *,
    methods: tuple[str, ...] | None = None,
    top: int = 32,
    seed: int = 0,
    log: Any = None,
) -> dict[str, Any]:
    """Score every saliency method on the ``top`` most CTC-like cells of ``dataset`` for each bundle of
    ``models`` (name -> bundle folder); the result holds one row per model and method, the targets, the method
    :func:`choose_default` picks, and the machine. ``seconds_per_cell`` counts the maps of the trained model and
    of both re-initialised ones."""
    from ..errors import CtcidError
    from ..explain import METHODS
    from ..io import CellDataset, load_true_masks
    from .ingest import machine_info

    say = log or (lambda _m: None)
    ds = CellDataset.open(dataset)
    if load_true_masks(ds) is None:
        raise CtcidError("has no ground-truth masks; ingest an export of `ctcid synth --masks`", ds.path)
    methods = tuple(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CtcidError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    rows: list[dict[str, Any]] = []
    for name, path in models.items():
        rows += _model_rows(name, Path(path), ds, methods, top, seed, say)
    return {
        "benchmark": "saliency",
        "dataset": str(dataset),
        "cells_per_model": top,
        "seed": seed,
        "targets": {k: {"min": lo, "max": hi} for k, lo, hi in TARGETS},
        "rows": rows,
        "default": choose_default(rows),
        "machine": machine_info(),
    }
