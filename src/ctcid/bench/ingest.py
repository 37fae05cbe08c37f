"""``ctcid bench ingest``: ingest throughput against a plain per-file loop on the same export."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_ingest", "machine_info"]

TARGET_CELLS_PER_S = 2000.0


def machine_info() -> dict[str, Any]:
    """CPU model, usable cores, the GPU when PyTorch is loaded and sees one, and library versions, recorded with
    every benchmark result."""
    from ..io.store import package_versions

    torch = sys.modules.get("torch")
    gpu = torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "gpu": gpu,
        "platform": platform.platform(),
        "versions": package_versions(),
    }


def _plain_loop(root: Path, channels: list[str]) -> tuple[np.ndarray, int]:
    """What a hand-written script does: list the files, open each with tifffile, stack per cell."""
    import tifffile

    cells = sorted({(p.parent, p.stem.rsplit("_", 1)[0]) for p in root.glob("*/*.tif")})
    stack = [np.stack([tifffile.imread(folder / f"{cell}_{ch}.tif") for ch in channels]) for folder, cell in cells]
    return np.stack(stack), len(cells)


def bench_ingest(cells: int = 2000, size: int = 80, workers: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Time ``ingest`` of a synthetic DEPArray export against a plain loop reading the same files.

    Both read files already in the page cache (the export was just written), so the figure is
    decoding and packing speed, not disk speed.
    """
    from ..io import CellDataset, IngestOptions, ingest
    from ..synth import CHANNELS, SynthConfig, generate_cohort

    patients = max(1, cells // 200)
    cfg = SynthConfig(patients=patients, cells_per_patient=max(1, cells // patients), seed=seed, size=size)
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-") as tmp:
        src = Path(tmp) / "export"
        src.mkdir()
        generate_cohort(src, cfg, workers=workers)
        n = cfg.patients * cfg.cells_per_patient

        t0 = time.perf_counter()
        plain, n_plain = _plain_loop(src, list(CHANNELS))
        t_plain = time.perf_counter() - t0

        t0 = time.perf_counter()
        ingest(src, Path(tmp) / "dataset", IngestOptions(workers=workers))
        t_ctcid = time.perf_counter() - t0

        ds = CellDataset.open(Path(tmp) / "dataset")
        assert len(ds) == n == n_plain and ds.pixels.shape == plain.shape  # both read the same cells
    ctcid_rate, plain_rate = n / t_ctcid, n / t_plain
    return {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "workload": {
            "layout": "deparray",
            "cells": n,
            "files": n * len(CHANNELS),
            "channels": list(CHANNELS),
            "size_px": size,
            "dtype": "uint16",
            "workers": workers or len(os.sched_getaffinity(0)),
        },
        "plain_loop": {
            "seconds": round(t_plain, 3),
            "cells_per_s": round(plain_rate, 1),
            "how": "tifffile.imread per file, np.stack per cell, one process",
        },
        "ctcid_ingest": {
            "seconds": round(t_ctcid, 3),
            "cells_per_s": round(ctcid_rate, 1),
            "how": "ctcid.io.ingest: layout plan, parallel decode, packed store, stats, fingerprint",
        },
        "ratio": round(ctcid_rate / plain_rate, 2),
        "target_cells_per_s": TARGET_CELLS_PER_S,
        "meets_target": ctcid_rate >= TARGET_CELLS_PER_S,
    }
