"""``ctcid bench detect``: detection recall and precision on synthetic slides, and frames/s, against a
per-frame scikit-image loop on the same frames in the same run."""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["bench_detect", "match_events"]

TARGET_RECALL = 0.97
TARGET_PRECISION = 0.95
TARGET_SECONDS_PER_FRAME = 0.5
MATCH_RADIUS_PX = 8.0


def match_events(truth_xy: np.ndarray, found_xy: np.ndarray, radius: float = MATCH_RADIUS_PX) -> int:
    """Number of one-to-one matches between true and found positions ``[n, 2]`` within ``radius``.

    A maximum matching (Hungarian assignment, a pair further apart than ``radius`` costing more than any
    number of closer ones), so no detection counts for two cells and no cell for two detections.

    Examples
    --------
    >>> match_events(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[5.0, 0.0], [30.0, 0.0]]), radius=8)
    1
    """
    from scipy.optimize import linear_sum_assignment

    if len(truth_xy) == 0 or len(found_xy) == 0:
        return 0
    d = np.hypot(truth_xy[:, None, 0] - found_xy[None, :, 0], truth_xy[:, None, 1] - found_xy[None, :, 1])
    cost = np.where(d <= radius, d, 1e9)
    rows, cols = linear_sum_assignment(cost)
    return int((d[rows, cols] <= radius).sum())


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _score(truth: pd.DataFrame, found: pd.DataFrame) -> dict[str, Any]:
    matched = 0
    for frame, t in truth.groupby("frame"):
        f = found[found["frame"] == frame]
        matched += match_events(t[["x_px", "y_px"]].to_numpy(), f[["x_px", "y_px"]].to_numpy())
    return {
        "true_cells": len(truth),
        "events": len(found),
        "matched": matched,
        "recall": round(matched / max(len(truth), 1), 4),
        "precision": round(matched / max(len(found), 1), 4),
    }


def _reference_loop(folder: Path, n_frames: int, size: int) -> tuple[pd.DataFrame, int]:
    """What a hand-written script does: per frame, read the tiles, Otsu on DAPI, ``label``, ``regionprops``,
    and cut a crop of every channel around each region."""
    import tifffile
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    rows = []
    half = size // 2
    for f in range(1, n_frames + 1):
        planes = np.stack([tifffile.imread(folder / f"Tile{c * n_frames + f:06d}.tif") for c in range(4)])
        dapi = planes[0]
        regions = regionprops(label(dapi > threshold_otsu(dapi)))
        padded = np.pad(planes, ((0, 0), (half, half), (half, half)), mode="edge")
        for r in regions:
            if r.area < 20:
                continue
            y, x = r.centroid
            yi, xi = round(y), round(x)
            _ = padded[:, yi : yi + size, xi : xi + size].copy()
            rows.append((f, x, y))
    return pd.DataFrame(rows, columns=["frame", "x_px", "y_px"]), n_frames


def bench_detect(
    frames: int = 6,
    frame_size: tuple[int, int] = (1000, 1400),
    workers: int | None = None,
    seed: int = 0,
    densities: tuple[str, ...] = ("sparse", "medium", "crowded"),
    size: int = 80,
) -> dict[str, Any]:
    """Detect the cells of synthetic slides (``frames`` frames at each density) and score them against the truth.

    Every event in the output dataset counts (flagged ones too); a true cell counts when its centre lies in the
    frame (all synthetic centres do). Speed: end-to-end ``detect`` (read, find, crop, write) with ``workers``
    processes, in wall-clock and in CPU seconds per frame (the machine's load average is recorded: on a shared
    machine the wall clock depends on it), :func:`ctcid.detect.find_cells` alone in one process, and the
    scikit-image loop in one process.
    """
    from .._workers import usable_cores
    from ..synth.frames import DENSITY
    from .ingest import machine_info

    workers = workers if workers is not None else usable_cores()
    load_before = [round(x, 2) for x in os.getloadavg()]
    h, w = frame_size
    results: dict[str, Any] = {}
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-") as tmp:
        for density in densities:
            src = _synthetic_slide(Path(tmp) / density, density, frames, frame_size, seed, workers)
            results[density], seconds = _score_slide(src, Path(tmp) / f"{density}-ds", workers, size)
            if density == "medium":
                timing = _speed(src, seconds)
    medium = results.get("medium", {})
    return {
        "benchmark": "detect",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "frame_size": [h, w],
        "channels": 4,
        "crop_size": size,
        "workers": workers,
        "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
        "match_radius_px": MATCH_RADIUS_PX,
        "seed": seed,
        "densities": {d: {"cells_per_mm2": DENSITY[d][0], **results[d]} for d in results},
        "speed_medium": timing,
        "targets": {
            "recall_medium": TARGET_RECALL,
            "precision_medium": TARGET_PRECISION,
            "seconds_per_frame": TARGET_SECONDS_PER_FRAME,
        },
        "meets_target": {
            "recall": medium.get("recall", 0) >= TARGET_RECALL,
            "precision": medium.get("precision", 0) >= TARGET_PRECISION,
            "speed": bool(timing) and timing["detect_seconds_per_frame"] <= TARGET_SECONDS_PER_FRAME,
        },
    }


def _synthetic_slide(
    src: Path, density: str, frames: int, frame_size: tuple[int, int], seed: int, workers: int
) -> Path:
    """Write a synthetic slide of about ``frames`` frames at ``density`` into the new folder ``src``."""
    from ..synth import SynthConfig
    from ..synth.frames import DENSITY, generate_frames

    h, w = frame_size
    area_mm2 = h * w * 0.64**2 / 1e6
    cells = max(1, int(DENSITY[density][0] * area_mm2 * frames))
    cfg = SynthConfig(
        patients=1, cells_per_patient=cells, frames=True, density=density, frame_size=frame_size, seed=seed
    )
    src.mkdir()
    generate_frames(src, cfg, workers=workers)
    return src


def _score_slide(src: Path, out: Path, workers: int, size: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Detect the cells of the slide ``src`` into ``out``, run the scikit-image loop on it, and score both against
    its truth; return the scores and the frames and seconds (detect wall and CPU, reference) they took."""
    from ..detect import DetectOptions, detect
    from ..io import CellDataset

    n_frames = json.loads((src / "frames.json").read_text())["n_frames"]
    truth = pd.read_csv(src / "truth.csv")
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    detect(src, out, DetectOptions(workers=workers, size=size))
    t_detect = time.perf_counter() - t0
    cpu_detect = _cpu_seconds() - cpu0
    table = CellDataset.open(out).table
    entry = _score(truth, table)
    flags = table["qc_flags"].fillna("").str.split(";").explode()
    entry["flag_counts"] = {k: int(v) for k, v in flags[flags != ""].value_counts().items()}
    entry["frames"] = n_frames
    entry["detect_seconds"] = round(t_detect, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ref, _ = _reference_loop(src, n_frames, size)
        t_ref = time.perf_counter() - t0
    entry["reference"] = _score(truth, ref)
    entry["reference_seconds"] = round(t_ref, 2)
    return entry, {"frames": n_frames, "detect": t_detect, "detect_cpu": cpu_detect, "reference": t_ref}


def _speed(src: Path, seconds: dict[str, float]) -> dict[str, float]:
    """Speed on the slide ``src`` from the times :func:`_score_slide` measured, and :func:`ctcid.detect.find_cells`
    alone on its first frame (median of three)."""
    from ..detect import find_cells, read_frame
    from ..detect.layouts import plan_frames

    plan = plan_frames(src)
    frame, _ = read_frame(plan.frames[0], plan.channels)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        find_cells(frame, plan.channels, plan.pixel_size_um)
        times.append(time.perf_counter() - t0)
    n_frames, t_detect, t_ref = seconds["frames"], seconds["detect"], seconds["reference"]
    return {
        "frames": n_frames,
        "detect_seconds_per_frame": round(t_detect / n_frames, 3),
        "detect_cpu_seconds_per_frame": round(seconds["detect_cpu"] / n_frames, 3),
        "detect_frames_per_s": round(n_frames / t_detect, 2),
        "find_cells_seconds_per_frame_1_process": round(float(np.median(times)), 3),
        "reference_frames_per_s_1_process": round(n_frames / t_ref, 2),
        "ratio_detect_vs_reference": round(t_ref / t_detect, 2),
    }
