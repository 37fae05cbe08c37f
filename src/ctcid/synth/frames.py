"""Synthetic slide scans: whole frames holding many cells, written as slide-scanning platforms export them.

Each patient becomes one slide: its cells (drawn by :func:`ctcid.synth.sample_cells`, so leukocyte subtypes, CTC
phenotypes and patient-to-patient variation are those of the crop generator) are spread over as many frames as
the density needs, and each frame is rendered as one field of view:

* Every cell is rendered on its own small canvas by the crop renderer's optics
  (:func:`ctcid.synth._render.render_signals`, noise-free) and added into the frame at its position; cells
  never overlap more than the density allows (a minimum distance between centres, as a fraction of the sum of
  the two radii: 1.05 sparse, 0.95 medium, 0.8 crowded, so crowded frames hold touching and overlapping cells).
* Illumination vignetting: excitation and bright field fall off towards the corners (by 20-45% at the corner,
  per slide), background included.
* Out-of-focus regions: about a third of the frames hold a soft-edged region (15-40% of the frame's shorter
  side in radius) where cells are blurred by 0.8-2 um more and bright field is further out of focus.
* Debris specks all over the frame, some fluorescent (the crop generator's rate per area).
* The camera: shot and read noise of the patient's camera, uint16.

A cell's centre lies inside its frame; a cell near the edge is cut by it, and a frame is rendered on its own (a
cut cell does not continue in the neighbouring frame). Channels are DAPI, CK, CD45 and BF (bright field, the
fourth channel, so that a model trained on ``ctcid synth`` crops applies to the detected cells).

Output
------
``tiles`` layout: ``Tile000001.tif`` ... one block of frames per channel (DAPI, CK, CD45, BF), as
high-definition single cell assay (HD-SCA) scans are exported; ``multipage``: ``frame000001.tif``, one
four-page TIFF per frame. With several patients, one sub-folder per slide. Besides the frames:

``truth.csv``
    One row per cell: ``sample`` (only with several slides), ``frame`` (the frame's number: for tiles, the
    number of its DAPI tile), ``x_px`` and ``y_px`` (column and row of the cell's centre in that frame),
    ``label`` (true class), ``diameter_um``, ``cell_id``, ``subtype``.
``frames.json``
    The options ``ctcid detect`` needs to read the folder (layout, channels, tiles per channel, pixel size,
    frame grid) and the generator's settings.

Randomness depends only on the seed: spawn key ``(20, patient)`` draws the slide (placement, vignetting,
out-of-focus regions) and ``(21, patient, frame)`` the pixels of one frame.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Callable
from concurrent.futures import as_completed
from typing import Any

import numpy as np
import pandas as pd

from .._workers import process_pool, usable_cores
from ._render import PAD, _camera, _Spectrum, render_signals
from ._tiff import tiff_header, write_tiff
from .cohort import _empty_target, _rng, _to_json, _writing, sample_cells
from .presets import PRESETS, SynthConfig, parse_frame_size

__all__ = ["FRAME_CHANNELS", "SPEC_FILE", "TRUTH_FILE", "generate_frames", "parse_frame_size", "slide_plan"]

#: Channels of a synthetic frame, in block (tiles) or page (multipage) order.
FRAME_CHANNELS = ("DAPI", "CK", "CD45", "BF")
#: The options file ``ctcid detect`` reads (:mod:`ctcid.detect.layouts` reads the same name and format).
SPEC_FILE = "frames.json"
SPEC_FORMAT = "ctcid-frames"
SPEC_VERSION = 1
#: Ground truth of a synthetic slide.
TRUTH_FILE = "truth.csv"
#: Cells per mm^2 of slide, and the smallest distance between two centres as a fraction of their radii's sum.
DENSITY = {"sparse": (50.0, 1.05), "medium": (200.0, 0.95), "crowded": (1000.0, 0.8)}
#: Side (px) of the canvas each cell is rendered on before it is added into its frame.
CANVAS = 64
_VIGNETTE = (0.2, 0.45)
_OOF_SHARE = 0.3
_OOF_RADIUS = (0.15, 0.4)
_OOF_BLUR_UM = (0.8, 2.0)
_OOF_DEFOCUS_UM = (2.0, 6.0)
_CHUNK = 128


def slide_plan(config: SynthConfig) -> tuple[int, int, int]:
    """Frames per slide, and the columns and rows of the grid they are laid out on.

    >>> slide_plan(SynthConfig(frames=True, cells_per_patient=500))
    (5, 3, 2)
    """
    h, w = config.frame_size
    area_mm2 = h * w * config.pixel_size_um**2 / 1e6
    per_frame = max(1.0, DENSITY[config.density][0] * area_mm2)
    n = max(1, math.ceil(config.cells_per_patient / per_frame))
    cols = math.ceil(math.sqrt(n))
    return n, cols, math.ceil(n / cols)


def _place(
    rng: np.random.Generator,
    radius: np.ndarray,
    frame: np.ndarray,
    n_frames: int,
    size: tuple[int, int],
    gap: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) inside each cell's frame, at least ``gap`` times the sum of two radii apart when possible."""
    h, w = size
    x = np.empty(len(radius))
    y = np.empty(len(radius))
    for f in range(n_frames):
        idx = np.flatnonzero(frame == f)
        px_, py_, pr = np.empty(len(idx)), np.empty(len(idx)), np.empty(len(idx))
        for k, i in enumerate(idx):
            best, best_slack = (0.0, 0.0), -np.inf
            for _ in range(30):
                cx = rng.uniform(0, w - 1, 16)
                cy = rng.uniform(0, h - 1, 16)
                if k:
                    d = np.hypot(cx[:, None] - px_[:k], cy[:, None] - py_[:k])
                    slack = (d - gap * (radius[i] + pr[:k])).min(axis=1)
                else:
                    slack = np.full(16, np.inf)
                ok = np.flatnonzero(slack >= 0)
                j = int(ok[0]) if ok.size else int(np.argmax(slack))  # the first that fits: uniform, not a lattice
                if slack[j] > best_slack:
                    best, best_slack = (cx[j], cy[j]), slack[j]
                if best_slack >= 0:
                    break
            px_[k], py_[k], pr[k] = best[0], best[1], radius[i]
        x[idx], y[idx] = px_, py_
    return x, y


def _paste(dst: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Add ``patch [..., S, S]`` into ``dst [..., H, W]`` at (top, left), clipped to ``dst``."""
    h, w = dst.shape[-2:]
    s = patch.shape[-1]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + s, h), min(left + s, w)
    if y1 > y0 and x1 > x0:
        dst[..., y0:y1, x0:x1] += patch[..., y0 - top : y1 - top, x0 - left : x1 - left]


def _debris(rng: np.random.Generator, bf: np.ndarray, fluo: np.ndarray, rate: float, px: float, peaks) -> None:
    """Specks of debris all over the frame: absorbing in bright field, a third of them fluorescent per channel."""
    h, w = bf.shape
    n = rng.poisson(rate * h * w * px * px / 1e6)
    for _ in range(n):
        sigma = rng.uniform(0.3, 1.0) / px + 0.5
        r = int(np.ceil(4 * sigma))
        cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        top, left = round(cy) - r, round(cx) - r
        yy, xx = np.mgrid[top : top + 2 * r + 1, left : left + 2 * r + 1]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
        _paste(bf, -rng.uniform(0.02, 0.15) * blob, top, left)
        for c in range(3):
            if rng.uniform() < 0.35:
                _paste(fluo[c], rng.lognormal(np.log(0.15), 0.7) * peaks[c] * blob, top, left)


def _render_frame(
    out: str,
    cells: pd.DataFrame,
    patients: pd.DataFrame,
    config: dict[str, Any],
    frame: dict[str, Any],
    key: tuple[int, ...],
) -> tuple[tuple[int, ...], int]:
    """Render one frame and write its files; return its key and its number of cells."""
    cfg = SynthConfig(**config)
    diff = PRESETS[cfg.difficulty]
    h, w = cfg.frame_size
    px = cfg.pixel_size_um
    rng = np.random.default_rng(np.random.SeedSequence(key[0], spawn_key=key[1:]))
    pat = patients.iloc[0]
    cells = cells.copy()
    x, y = cells["x_px"].to_numpy(), cells["y_px"].to_numpy()
    focus = np.zeros(len(cells))
    if frame["oof"]:
        d = np.hypot(x - frame["oof_x"], y - frame["oof_y"]) / frame["oof_r"]
        focus = np.clip(1.5 - d, 0.0, 1.0)  # 1 inside, fading to 0 over half a radius
    cells["blur_sigma_um"] = np.hypot(cells["blur_sigma_um"].to_numpy(), focus * frame["oof_blur_um"])
    cells["bf_defocus_um"] = cells["bf_defocus_um"].to_numpy() + focus * frame["oof_defocus_um"]
    cells["offset_x_px"] = x - np.round(x) + 0.5
    cells["offset_y_px"] = y - np.round(y) + 0.5
    cells["n_debris"] = 0
    cells["neighbour"] = "none"
    bf = np.zeros((h, w), np.float32)
    fluo = np.zeros((3, h, w), np.float32)
    spectrum = _Spectrum(CANVAS + 2 * PAD)
    half = CANVAS // 2
    for start in range(0, len(cells), _CHUNK):
        part = cells.iloc[start : start + _CHUNK]
        bf_rel, sig, _ = render_signals(part, patients, size=CANVAS, pixel_size_um=px, rng=rng, spectrum=spectrum)
        tops = np.round(part["y_px"].to_numpy()).astype(int) - half
        lefts = np.round(part["x_px"].to_numpy()).astype(int) - half
        for k in range(len(part)):
            _paste(bf, bf_rel[k], tops[k], lefts[k])
            _paste(fluo, sig[k], tops[k], lefts[k])
    peaks = [float(pat[c]) for c in ("dapi_peak", "ck_peak", "cd45_peak")]
    rate = diff.debris_rate * 2.0 / (cfg.size * cfg.size * px * px / 1e6)  # the crop generator's specks per mm^2
    _debris(rng, bf, fluo, rate, px, peaks)

    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    vignette = 1.0 - np.float32(frame["vignette"]) * (yy * yy + xx * xx) / 2
    images = np.empty((1, 4, h, w), np.float32)
    for c, name in enumerate(("dapi_background", "ck_background", "cd45_background")):
        np.multiply(vignette, fluo[c] + np.float32(pat[name]), out=images[0, c])
    np.multiply(vignette, (1.0 + bf) * np.float32(pat["bf_intensity"]), out=images[0, 3])
    del fluo, bf
    images += np.float32(pat["camera_offset"])
    np.maximum(images, 0.0, out=images)
    pixels = _camera(
        rng, images, np.array([pat["camera_gain"]], np.float32), np.array([pat["read_noise"]], np.float32)
    )[0]
    _write_frame(pathlib.Path(out), pixels, frame, cfg)
    return key, len(cells)


def _write_frame(folder: pathlib.Path, pixels: np.ndarray, frame: dict[str, Any], cfg: SynthConfig) -> None:
    h, w = cfg.frame_size
    if cfg.frame_layout == "tiles":
        header = tiff_header(h, w, cfg.pixel_size_um)
        for c in range(len(FRAME_CHANNELS)):
            number = c * frame["n_frames"] + frame["number"]
            write_tiff(folder / f"Tile{number:06d}.tif", np.ascontiguousarray(pixels[c]), header)
    else:
        import tifffile

        tifffile.imwrite(
            folder / f"frame{frame['number']:06d}.tif",
            pixels,
            photometric="minisblack",
            metadata=None,
            resolution=(1e4 / cfg.pixel_size_um, 1e4 / cfg.pixel_size_um),
            resolutionunit="CENTIMETER",
        )


def generate_frames(
    out: str | os.PathLike[str],
    config: SynthConfig,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> pathlib.Path:
    """Write synthetic slide scans (one per patient) into the empty folder ``out``.

    Parameters
    ----------
    out
        An existing, empty folder (the caller creates it, typically through an atomic rename).
    config
        The cohort; ``frame_layout``, ``density`` and ``frame_size`` shape the slides (``frames`` need not be
        set). ``cells_per_patient`` cells make one slide.
    workers
        Processes rendering frames in parallel; default all usable cores. The output is byte-identical whatever
        the number.
    progress
        Called with the number of cells of each frame just written.

    Returns
    -------
    pathlib.Path
        ``Path(out)``.

    Examples
    --------
    >>> import tempfile
    >>> cfg = SynthConfig(patients=1, cells_per_patient=12, frames=True, frame_size=(160, 200), density="crowded")
    >>> out = generate_frames(tempfile.mkdtemp(), cfg, workers=1)
    >>> sorted(p.name for p in out.iterdir())[:3], (out / "truth.csv").read_text().splitlines()[0]
    (['Tile000001.tif', 'Tile000002.tif', 'Tile000003.tif'], 'frame,x_px,y_px,label,diameter_um,cell_id,subtype')
    """
    out = _empty_target(out, config, workers, "synthetic slides")
    patients, cells = sample_cells(config)
    per_slide = config.patients > 1
    tasks, truth = [], []
    for p, sample in enumerate(patients["sample_id"]):
        mine = cells[cells["sample_id"] == sample].reset_index(drop=True)
        mine, slide_tasks = _plan_slide(config, p, mine, patients.iloc[[p]], out / sample if per_slide else out)
        tasks += slide_tasks
        truth.append(mine.assign(sample=sample))
    with _writing(out, "the slides", config, patients):
        if per_slide:
            for sample in patients["sample_id"]:
                (out / sample).mkdir()
        _run(tasks, config, workers or usable_cores(), progress)
        _write_truth(out, pd.concat(truth, ignore_index=True), per_slide)
        _write_spec(out, config, patients, len(cells))
    return out


def _plan_slide(
    config: SynthConfig, p: int, cells: pd.DataFrame, patient: pd.DataFrame, folder: pathlib.Path
) -> tuple[pd.DataFrame, list[tuple[Any, ...]]]:
    """Lay the cells of patient number ``p`` out on its slide and draw each frame's vignetting and out-of-focus
    region; return the cells with ``x_px``, ``y_px`` and ``frame``, and one rendering task per frame."""
    n_frames, _, _ = slide_plan(config)
    rng = _rng(config.seed, 20, p)
    frame_of = np.arange(len(cells)) * n_frames // len(cells)
    radius = cells["cell_diameter_um"].to_numpy() / (2 * config.pixel_size_um)
    x, y = _place(rng, radius, frame_of, n_frames, config.frame_size, DENSITY[config.density][1])
    cells = cells.assign(x_px=x, y_px=y, frame=frame_of + 1)
    vignette = rng.uniform(*_VIGNETTE)
    h, w = config.frame_size
    tasks = []
    for f in range(n_frames):
        oof = bool(rng.uniform() < _OOF_SHARE)
        frame = {
            "number": f + 1,
            "n_frames": n_frames,
            "vignette": vignette,
            "oof": oof,
            "oof_x": rng.uniform(0, w),
            "oof_y": rng.uniform(0, h),
            "oof_r": rng.uniform(*_OOF_RADIUS) * min(h, w),
            "oof_blur_um": rng.uniform(*_OOF_BLUR_UM),
            "oof_defocus_um": rng.uniform(*_OOF_DEFOCUS_UM),
        }
        tasks.append((str(folder), cells[frame_of == f], patient, frame, (config.seed, 21, p, f)))
    return cells, tasks


def _write_spec(out: pathlib.Path, config: SynthConfig, patients: pd.DataFrame, n_cells: int) -> None:
    """Write :data:`SPEC_FILE`: what ``ctcid detect`` needs to read the slides, and the generator's settings."""
    n_frames, cols, rows = slide_plan(config)
    per_slide = config.patients > 1
    spec = {
        "format": SPEC_FORMAT,
        "format_version": SPEC_VERSION,
        "layout": config.frame_layout,
        "channels": list(FRAME_CHANNELS),
        "pixel_size_um": config.pixel_size_um,
        "frame_size": list(config.frame_size),
        "grid": [cols, rows],
        "serpentine": False,
        "slides": list(patients["sample_id"]) if per_slide else None,
        "n_frames": n_frames,
        "n_cells": n_cells,
        "config": config.to_dict(),
    }
    if config.frame_layout == "tiles":
        spec["tiles_per_channel"] = n_frames
    (out / SPEC_FILE).write_text(json.dumps(_to_json(spec), indent=2) + "\n", encoding="utf-8")


def _run(tasks: list, config: SynthConfig, workers: int, progress: Callable[[int], None] | None) -> None:
    cfg = config.to_dict()
    n_workers = min(workers, len(tasks))
    if n_workers <= 1:
        for folder, part, pat, frame, key in tasks:
            _, n = _render_frame(folder, part, pat, cfg, frame, key)
            if progress is not None:
                progress(n)
        return
    with process_pool(n_workers) as pool:
        futures = [
            pool.submit(_render_frame, folder, part, pat, cfg, frame, key)
            for folder, part, pat, frame, key in tasks
        ]
        try:
            for future in as_completed(futures):
                _, n = future.result()
                if progress is not None:
                    progress(n)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _write_truth(out: pathlib.Path, cells: pd.DataFrame, per_slide: bool) -> None:
    truth = pd.DataFrame(
        {
            "frame": cells["frame"].astype(np.int64),
            "x_px": cells["x_px"].round(3),
            "y_px": cells["y_px"].round(3),
            "label": cells["label_true"],
            "diameter_um": cells["cell_diameter_um"].round(3),
            "cell_id": cells["cell_id"],
            "subtype": cells["subtype"],
        }
    )
    if per_slide:
        truth.insert(0, "sample", cells["sample"])
    truth.to_csv(out / TRUTH_FILE, index=False, lineterminator="\n")
