"""``ctcid bench features``: segmentation and feature throughput against a per-cell scikit-image loop."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_features"]

TARGET_CELLS_PER_S = 500.0


def _reference_loop(pixels: np.ndarray, masks: np.ndarray) -> int:
    """What a hand-written script does: regionprops, GLCM and LBP per cell and channel with scikit-image."""
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.measure import regionprops

    n = 0
    for px, m in zip(pixels, masks, strict=True):
        cell = (m > 0).astype(np.uint8)
        nuc = (m == 2).astype(np.uint8)
        for region in (cell, nuc):
            for rp in regionprops(region):
                _ = (rp.area, rp.perimeter, rp.eccentricity, rp.solidity, rp.axis_major_length)
        for ch in px:
            inside = ch[cell > 0]
            if inside.size == 0:
                continue
            lo, hi = float(inside.min()), float(inside.max())
            q = np.clip((ch - lo) / max(hi - lo, 1.0) * 16, 0, 15).astype(np.uint8)
            g = graycomatrix(
                q, [1, 2, 4], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=16, symmetric=True, normed=True
            )
            for prop in ("contrast", "homogeneity", "energy", "correlation"):
                graycoprops(g, prop)
            lbp = local_binary_pattern(ch.astype(np.float64), 8, 1, "uniform")
            np.bincount(lbp[cell > 0].astype(np.int64), minlength=10)
            _ = (inside.mean(), np.median(inside), inside.std())
        n += 1
    return n


def bench_features(
    cells: int = 2000, size: int = 80, workers: int | None = None, reference_cells: int = 300, seed: int = 0
) -> dict[str, Any]:
    """Time segmentation and features of a generated 4-channel dataset, and a scikit-image loop, in one run."""
    import warnings

    from .._workers import usable_cores
    from ..features import compute_features, load_segmentation, segment_dataset
    from ..io import CellDataset, DatasetWriter
    from ..synth import SynthConfig
    from ..synth.cohort import render_cells, sample_cells
    from .ingest import machine_info

    workers = workers or usable_cores()
    patients = max(1, cells // 200)
    cfg = SynthConfig(patients=patients, cells_per_patient=max(1, cells // patients), seed=seed, size=size)
    pat, table = sample_cells(cfg)
    images, _ = render_cells(table, pat, size=size, pixel_size_um=cfg.pixel_size_um, seed=seed)
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-") as tmp:
        path = Path(tmp) / "ds"
        path.mkdir()
        writer = DatasetWriter(path, ["BF", "DAPI", "CK", "CD45"], size, cfg.pixel_size_um)
        writer.append(images, table[["cell_id", "sample_id", "label"]].assign(qc_flags="").reset_index(drop=True))
        writer.finish({"source": {"root": "generated", "layout": "bench", "detected": False}, "rejected": 0})
        ds = CellDataset.open(path)
        n = len(ds)
        t0 = time.perf_counter()
        segment_dataset(ds, workers=workers)
        t_seg = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = compute_features(ds, workers=workers)
        t_feat = time.perf_counter() - t0
        masks = np.asarray(load_segmentation(ds).masks[:reference_cells])
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n_ref = _reference_loop(np.asarray(ds.pixels[:reference_cells]), masks)
        t_ref = time.perf_counter() - t0
    feat_rate = n / t_feat
    ref_rate = n_ref / t_ref
    return {
        "benchmark": "features",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "cells": n,
        "crop_size": size,
        "channels": 4,
        "features": int(feats.shape[1] - 4),
        "workers": workers,
        "segmentation_cells_per_s": round(n / t_seg, 1),
        "features_cells_per_s": round(feat_rate, 1),
        "segmentation_and_features_cells_per_s": round(n / (t_seg + t_feat), 1),
        "reference_cells": n_ref,
        "reference_skimage_loop_cells_per_s_1_process": round(ref_rate, 1),
        "ratio_features_vs_reference": round(feat_rate / ref_rate, 2),
        "target_features_cells_per_s": TARGET_CELLS_PER_S,
        "meets_target": feat_rate >= TARGET_CELLS_PER_S,
    }
