"""Segmentation masks and feature tables cached inside a dataset folder, computed once in parallel.

``DATASET/segmentation/``
    ``masks.npy`` (uint8 ``[cells, H, W]``, read memory-mapped: 0 background, 1 cytoplasm, 2 nucleus),
    ``flags.parquet`` (``index``, ``cell_id``, ``seg_flags``) and ``segmentation.json`` (options, the
    dataset's fingerprint, flag counts, versions), written last.
``DATASET/features/``
    ``features.parquet`` (``index``, ``cell_id``, ``sample_id``, ``seg_flags`` and the feature columns),
    ``catalogue.csv`` (name, group, channels, unit of every column) and ``features.json``.

Each folder appears atomically (built under a temporary name, then renamed). A cache is used only when
its header names the dataset's fingerprint and the same options; otherwise it is recomputed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._workers import process_pool, usable_cores
from ..errors import CtcidError
from ..io import CellDataset
from ..io._atomic import atomic_dir
from ..io._json import read_versioned_json
from ..io.store import package_versions
from ..segment import SegmentConfig, segment_cells
from .table import FeatureConfig, feature_catalogue, measure_cells

__all__ = ["SegmentationCache", "compute_features", "load_features", "load_segmentation", "segment_dataset"]

SEG_DIR, SEG_FORMAT = "segmentation", "ctcid-segmentation"
FEAT_DIR, FEAT_FORMAT = "features", "ctcid-features"
FORMAT_VERSION = 1
BLOCK = 256


@dataclass
class SegmentationCache:
    """Masks ``[cells, H, W]`` (memory-mapped), per-cell flags and the header of a dataset's segmentation."""

    masks: np.ndarray
    flags: pd.Series
    header: dict[str, Any]


_OPEN: dict[tuple[str, str], CellDataset] = {}


def _dataset(path: str, fingerprint: str) -> CellDataset:
    """The dataset at ``path``, opened once per process (and again if it was replaced since)."""
    key = (path, fingerprint)
    if key not in _OPEN:
        _OPEN.clear()
        _OPEN[key] = CellDataset.open(path)
    return _OPEN[key]


def _block(
    path: str,
    fingerprint: str,
    lo: int,
    hi: int,
    seg: dict[str, Any],
    feat: dict[str, Any] | None,
    cached_masks: bool,
) -> tuple[int, np.ndarray, list[str], pd.DataFrame | None]:
    ds = _dataset(path, fingerprint)
    pixels = np.asarray(ds.pixels[lo:hi])
    flags: list[str] = []
    if cached_masks:
        masks = np.asarray(load_segmentation(ds).masks[lo:hi])
    else:
        masks, flags = segment_cells(pixels, ds.channels, ds.pixel_size_um, SegmentConfig(**seg))
    table = None
    if feat is not None:
        table = measure_cells(pixels, masks, ds.channels, ds.pixel_size_um, FeatureConfig(**feat))
    return lo, masks, flags, table


def _run_blocks(
    ds: CellDataset,
    seg: SegmentConfig,
    feat: FeatureConfig | None,
    cached_masks: bool,
    workers: int,
    progress: Callable[[int, int], None] | None,
    sink: Callable[[int, np.ndarray, list[str], pd.DataFrame | None], None],
) -> None:
    n = len(ds)
    spans = [(lo, min(n, lo + BLOCK)) for lo in range(0, n, BLOCK)]
    args = [
        (str(ds.path), ds.fingerprint, lo, hi, seg.to_dict(), feat.to_dict() if feat else None, cached_masks)
        for lo, hi in spans
    ]
    done = 0
    workers = max(1, min(workers or usable_cores(), len(spans)))
    if workers == 1:
        results = (_block(*a) for a in args)
        for res in results:
            sink(*res)
            done += res[1].shape[0]
            if progress:
                progress(done, n)
        return
    with process_pool(workers) as pool:
        for res in pool.map(_block, *zip(*args, strict=True)):
            sink(*res)
            done += res[1].shape[0]
            if progress:
                progress(done, n)


def _matches(header_path: Path, fmt: str, fingerprint: str, options: dict[str, Any]) -> bool:
    if not header_path.is_file():
        return False
    try:
        head = read_versioned_json(header_path, fmt, FORMAT_VERSION, "cache header")
    except CtcidError:
        return False
    return head.get("dataset_fingerprint") == fingerprint and head.get("options") == json.loads(
        json.dumps(options)
    )


def segment_dataset(
    ds: CellDataset,
    config: SegmentConfig | None = None,
    *,
    workers: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SegmentationCache:
    """Segment every cell of ``ds`` into ``DATASET/segmentation/`` (reused when already there)."""
    cfg = config or SegmentConfig()
    cfg.validate()
    folder = ds.path / SEG_DIR
    options = {"segmentation": cfg.to_dict()}
    if not overwrite and _matches(folder / "segmentation.json", SEG_FORMAT, ds.fingerprint, options):
        return load_segmentation(ds)
    h, w = ds.crop_size
    t0 = time.perf_counter()
    flags: list[str] = [""] * len(ds)
    with atomic_dir(folder, overwrite=True) as tmp:
        out = np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=np.uint8, shape=(len(ds), h, w))

        def sink(lo: int, masks: np.ndarray, f: list[str], _t: Any) -> None:
            out[lo : lo + len(masks)] = masks
            flags[lo : lo + len(masks)] = f

        _run_blocks(ds, cfg, None, False, workers, progress, sink)
        out.flush()
        frame = pd.DataFrame({"index": np.arange(len(ds)), "cell_id": ds.table["cell_id"], "seg_flags": flags})
        frame.to_parquet(tmp / "flags.parquet", index=False)
        counts: dict[str, int] = {}
        for f in flags:
            for one in filter(None, f.split(";")):
                counts[one] = counts.get(one, 0) + 1
        header = {
            "format": SEG_FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset_fingerprint": ds.fingerprint,
            "n_cells": len(ds),
            "masks": {
                "file": "masks.npy",
                "dtype": "uint8",
                "shape": [len(ds), h, w],
                "values": {"0": "background", "1": "cytoplasm", "2": "nucleus"},
            },
            "options": options,
            "flag_counts": counts,
            "seconds": round(time.perf_counter() - t0, 2),
            "versions": package_versions(),
        }
        (tmp / "segmentation.json").write_text(json.dumps(header, indent=2) + "\n")
    return load_segmentation(ds)


def _cache_header(ds: CellDataset, head: Path, fmt: str, what: str, command: str) -> dict[str, Any]:
    """The header of a cache in ``ds``, refused when missing or made for another version of the dataset."""
    if not head.is_file():
        raise CtcidError(f"no {what} here yet; run {command} first", ds.path)
    header = read_versioned_json(head, fmt, FORMAT_VERSION, f"{what} header")
    if header.get("dataset_fingerprint") != ds.fingerprint:
        raise CtcidError(f"{what} were made for another version of this dataset; run {command} again", head.parent)
    return header


def load_segmentation(ds: CellDataset) -> SegmentationCache:
    """Open the cached segmentation of ``ds`` (``ctcid segment`` or ``ctcid features`` writes it)."""
    folder = ds.path / SEG_DIR
    header = _cache_header(ds, folder / "segmentation.json", SEG_FORMAT, "segmentation", "`ctcid segment`")
    masks = np.load(folder / header["masks"]["file"], mmap_mode="r", allow_pickle=False)
    if masks.shape != (len(ds), *ds.crop_size):
        raise CtcidError(f"mask store has shape {masks.shape}, expected {(len(ds), *ds.crop_size)}", folder)
    flags = pd.read_parquet(folder / "flags.parquet")["seg_flags"].fillna("")
    return SegmentationCache(masks, flags, header)


def compute_features(
    ds: CellDataset,
    segmentation: SegmentConfig | None = None,
    config: FeatureConfig | None = None,
    *,
    workers: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Segment (when not cached) and measure every cell of ``ds``; cache the table in ``DATASET/features/``."""
    seg_cfg = segmentation or SegmentConfig()
    feat_cfg = config or FeatureConfig()
    seg_cfg.validate()
    feat_cfg.validate()
    folder = ds.path / FEAT_DIR
    options = {"segmentation": seg_cfg.to_dict(), "features": feat_cfg.to_dict()}
    if not overwrite and _matches(folder / "features.json", FEAT_FORMAT, ds.fingerprint, options):
        return load_features(ds)
    seg = segment_dataset(ds, seg_cfg, workers=workers, overwrite=overwrite)
    t0 = time.perf_counter()
    parts: dict[int, pd.DataFrame] = {}

    def sink(lo: int, _m: np.ndarray, _f: list[str], table: pd.DataFrame | None) -> None:
        parts[lo] = table

    _run_blocks(ds, seg_cfg, feat_cfg, True, workers, progress, sink)
    seconds = time.perf_counter() - t0
    feats = (
        pd.concat([parts[k] for k in sorted(parts)], ignore_index=True)
        if parts
        else pd.DataFrame(columns=feature_catalogue(ds.channels, feat_cfg)["name"])
    )
    table = pd.concat(
        [
            pd.DataFrame(
                {
                    "index": np.arange(len(ds)),
                    "cell_id": ds.table["cell_id"].to_numpy(),
                    "sample_id": ds.table["sample_id"].to_numpy(),
                    "seg_flags": seg.flags.to_numpy(),
                }
            ),
            feats,
        ],
        axis=1,
    )
    with atomic_dir(folder, overwrite=True) as tmp:
        table.to_parquet(tmp / "features.parquet", index=False)
        feature_catalogue(ds.channels, feat_cfg).to_csv(tmp / "catalogue.csv", index=False)
        header = {
            "format": FEAT_FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset_fingerprint": ds.fingerprint,
            "n_cells": len(ds),
            "n_features": feats.shape[1],
            "options": options,
            "seconds": round(seconds, 2),
            "cells_per_second": round(len(ds) / seconds, 1) if seconds > 0 else None,
            "versions": package_versions(),
        }
        (tmp / "features.json").write_text(json.dumps(header, indent=2) + "\n")
    return table


def load_features(ds: CellDataset) -> pd.DataFrame:
    """The cached feature table of ``ds`` (rows in dataset order)."""
    folder = ds.path / FEAT_DIR
    _cache_header(ds, folder / "features.json", FEAT_FORMAT, "features", "`ctcid features`")
    table = pd.read_parquet(folder / "features.parquet")
    if len(table) != len(ds):
        raise CtcidError(f"feature table has {len(table)} rows, the dataset {len(ds)} cells", folder)
    return table
