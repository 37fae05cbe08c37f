"""Sample a synthetic cohort, render it, and write it in the DEPArray export layout.

Randomness is organised so that the output depends only on the seed: every stream is a
:class:`numpy.random.SeedSequence` built from ``(seed, spawn_key)`` with a fixed key per purpose, patient
and chunk of cells, never from global state or from the order in which worker processes finish.

=============================  ===========================================
spawn key                      draws
=============================  ===========================================
``(0,)``                       patient-level parameters
``(1, patient)``               the cells of one patient
``(2,)``                       which labels are flipped (label noise)
``(3, patient, chunk)``        the pixels of one chunk of one patient
``(4,)``                       survival outcomes (:mod:`ctcid.synth.outcomes`)
=============================  ===========================================
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from typing import Any

import numpy as np
import pandas as pd

from .._workers import process_pool, usable_cores
from ..errors import CtcidError
from ._render import _DEFOCUS_BLUR, _PSF_SIGMA_UM, CHANNELS, PAD, _Spectrum, expose, render_signals
from ._tiff import tiff_header, write_tiff
from .outcomes import write_clinical
from .presets import PRESETS, Difficulty, SynthConfig

__all__ = ["CHANNELS", "FORMAT_VERSION", "generate_cohort", "render_cells", "sample_cells"]

#: Version of the layout of ``cohort.json`` and ``labels.csv``.
FORMAT_VERSION = 1
#: Cells rendered together (bounds memory: about 1 MB per cell at 80 px).
CHUNK = 128

WBC_SUBTYPES = ("lymphocyte", "neutrophil", "monocyte")
CTC_SUBTYPES = ("ctc", "ctc_ck_low", "ctc_apoptotic", "ctc_small")

#: Dark offset (counts) of the camera.
_CAMERA_OFFSET = 100.0


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _beta_around(rng: np.random.Generator, mean: float, concentration: float, n: int) -> np.ndarray:
    """``n`` draws from a Beta distribution with the given mean (0 and 1 are kept exactly)."""
    if mean <= 0.0:
        return np.zeros(n)
    if mean >= 1.0:
        return np.ones(n)
    return rng.beta(mean * concentration, (1.0 - mean) * concentration, n)


def _allocate(prevalence: np.ndarray, cells: int, total: int) -> np.ndarray:
    """Integer CTC counts per patient close to ``prevalence * cells`` that sum to ``total``."""
    want = prevalence * cells
    counts = np.minimum(np.floor(want), cells).astype(int)
    rest = total - counts.sum()
    if rest > 0:
        order = np.argsort(-(want - counts), kind="stable")
        order = [i for i in order if want[i] > 0 and counts[i] < cells]
        for i in order[:rest]:
            counts[i] += 1
    return counts


def _patient_table(config: SynthConfig, diff: Difficulty) -> pd.DataFrame:
    rng = _rng(config.seed, 0)
    n = config.patients
    width = max(2, len(str(n)))
    ids = [f"{config.sample_prefix}{i + 1:0{width}d}" for i in range(n)]

    # prevalence: a fixed share of patients without CTCs, a gamma spread over the others, mean = ctc_fraction
    n_zero = min(round(diff.zero_ctc_patient_fraction * n), n - 1)
    zero = np.zeros(n, bool)
    zero[rng.permutation(n)[:n_zero]] = True
    weight = rng.gamma(diff.prevalence_shape, 1.0, n)
    weight[zero] = 0.0
    prevalence = np.zeros(n)
    if config.ctc_fraction > 0 and weight.sum() > 0:
        target = config.ctc_fraction * n
        free = ~zero
        for _ in range(50):  # water-filling: no patient above 1, mean kept
            prevalence[free] = weight[free] * (target - prevalence[~free].sum()) / weight[free].sum()
            over = free & (prevalence > 1.0)
            if not over.any():
                break
            prevalence[over] = 1.0
            free &= ~over
        prevalence = np.clip(prevalence, 0.0, 1.0)
    total_ctc = min(round(config.ctc_fraction * n * config.cells_per_patient), n * config.cells_per_patient)
    n_ctc = _allocate(prevalence, config.cells_per_patient, total_ctc)

    mix = rng.dirichlet(np.asarray(diff.wbc_mix, float) / sum(diff.wbc_mix) * 60.0, n)
    grad_angle = rng.uniform(0, 2 * np.pi, n)
    grad = diff.illumination_gradient * rng.uniform(0.5, 1.5, n)
    conc = diff.phenotype_concentration
    table = {
        "sample_id": ids,
        "n_cells": np.full(n, config.cells_per_patient),
        "n_ctc": n_ctc,
        "ctc_prevalence": n_ctc / config.cells_per_patient,
        "lymphocyte_share": mix[:, 0],
        "neutrophil_share": mix[:, 1],
        "monocyte_share": mix[:, 2],
        "bf_intensity": np.clip(diff.bf_counts * rng.lognormal(0, diff.illumination_cv, n), 2000, 60000),
        "illum_grad_x": grad * np.cos(grad_angle),
        "illum_grad_y": grad * np.sin(grad_angle),
        "defocus_mean_um": rng.normal(diff.defocus_um, diff.defocus_between_um, n),
        "defocus_sd_um": diff.defocus_within_um * rng.uniform(0.7, 1.3, n),
        "blur_um": rng.uniform(0, diff.blur_um, n),
        "dapi_peak": diff.stain_counts[0] * rng.lognormal(0, diff.stain_cv, n),
        "ck_peak": diff.stain_counts[1] * rng.lognormal(0, diff.stain_cv, n),
        "cd45_peak": diff.stain_counts[2] * rng.lognormal(0, diff.stain_cv, n),
        "dapi_background": diff.fluorescence_background * rng.lognormal(0, 0.3, n),
        "ck_background": diff.fluorescence_background * rng.lognormal(0, 0.3, n),
        "cd45_background": diff.fluorescence_background * rng.lognormal(0, 0.3, n),
        "camera_gain": diff.camera_gain * rng.lognormal(0, 0.15, n),
        "read_noise": diff.read_noise * rng.uniform(0.8, 1.2, n),
        "camera_offset": np.full(n, _CAMERA_OFFSET),
        "ctc_diameter_um": diff.ctc_diameter_um * rng.lognormal(0, diff.ctc_diameter_between_cv, n),
        "ctc_irregularity": diff.ctc_irregularity * rng.lognormal(0, 0.35, n),
        "ctc_nc_ratio": np.clip(rng.normal(diff.ctc_nc_ratio, 0.05, n), 0.5, 0.88),
        "ctc_chromatin_scale_um": diff.ctc_chromatin_scale_um * rng.lognormal(0, 0.2, n),
        "ctc_ck_level": rng.lognormal(0, diff.ctc_ck_between_sigma, n),
        "ctc_ck_low_fraction": _beta_around(rng, diff.ctc_ck_low_fraction, conc, n),
        "ctc_apoptotic_fraction": _beta_around(rng, diff.ctc_apoptotic_fraction, conc, n),
        "ctc_small_fraction": _beta_around(rng, diff.ctc_small_fraction, conc, n),
        "ctc_wbc_like_fraction": _beta_around(rng, diff.ctc_wbc_like_fraction, conc, n),
    }
    return pd.DataFrame(table)


def _wbc_cells(rng: np.random.Generator, pat: Any, diff: Difficulty, n: int) -> dict[str, np.ndarray]:
    share = np.array([pat.lymphocyte_share, pat.neutrophil_share, pat.monocyte_share])
    kind = rng.choice(3, size=n, p=share / share.sum())
    sizes = np.array([diff.lymphocyte_diameter_um, diff.neutrophil_diameter_um, diff.monocyte_diameter_um])
    mean, sd = sizes[kind, 0], sizes[kind, 1]
    diameter = mean + sd * np.clip(rng.standard_normal(n), -2.5, 2.5)
    nc = np.clip(rng.normal(np.array([0.78, 0.55, 0.6])[kind], 0.035), 0.45, 0.88)
    lobes = np.where(kind == 1, rng.choice([3, 4, 5], size=n, p=[0.35, 0.45, 0.2]), 1)
    dim = rng.uniform(0, 1, n) < diff.wbc_cd45_dim_fraction
    nonspecific = rng.uniform(0, 1, n) < diff.wbc_ck_nonspecific_fraction
    mimic = rng.uniform(0, 1, n) < diff.wbc_mimic_fraction
    cd45 = np.array([0.8, 0.7, 1.0])[kind] * rng.lognormal(0, 0.25, n)
    cd45 = np.where(dim, cd45 * rng.uniform(0.0, 0.12, n), cd45)
    cd45 = np.where(mimic, cd45 * rng.uniform(0.0, 0.05, n), cd45)
    ck = np.where(nonspecific, rng.uniform(0.08, 0.2, n), 0.01 * rng.lognormal(0, 0.3, n))
    ck = np.where(mimic, rng.lognormal(np.log(0.5), 0.5, n), ck)
    dim |= mimic
    nonspecific |= mimic
    return {
        "label": np.full(n, "wbc"),
        "subtype": np.array(WBC_SUBTYPES)[kind],
        "wbc_like": np.zeros(n, bool),
        "cell_diameter_um": diameter,
        "nucleus_diameter_um": nc * diameter,
        "irregularity": np.array([0.015, 0.02, 0.03])[kind] * rng.uniform(0.7, 1.3, n),
        "nucleus_irregularity": np.array([0.02, 0.0, 0.03])[kind] * rng.uniform(0.7, 1.3, n),
        "nucleus_offset": np.array([0.06, 0.05, 0.17])[kind] + rng.uniform(-0.05, 0.06, n),
        "n_lobes": lobes,
        "indentation": np.where(kind == 2, rng.uniform(0.35, 0.6, n), 0.0),
        "n_nucleoli": np.zeros(n, int),
        "chromatin_scale_um": 0.45 * rng.lognormal(0, 0.1, n),
        "chromatin_contrast": np.array([0.35, 0.3, 0.25])[kind] * rng.uniform(0.8, 1.2, n),
        "granularity": np.array([0.15, 1.0, 0.5])[kind] * rng.uniform(0.7, 1.3, n),
        "dapi_level": np.array([1.25, 1.15, 0.85])[kind] * rng.lognormal(0, 0.15, n),
        "ck_level": ck,
        "ck_fibres": np.where(mimic, 0.5, 0.0),
        "cd45_level": cd45,
        "ck_status": np.where(nonspecific, "nonspecific", "negative"),
        "cd45_status": np.where(dim, "dim", "positive"),
    }


def _ctc_cells(rng: np.random.Generator, pat: Any, diff: Difficulty, n: int) -> dict[str, np.ndarray]:
    fa, fs, fl = pat.ctc_apoptotic_fraction, pat.ctc_small_fraction, pat.ctc_ck_low_fraction
    probs = np.array([max(1.0 - fa - fs - fl, 0.0), fl, fa, fs])
    kind = rng.choice(4, size=n, p=probs / probs.sum())  # ctc, ctc_ck_low, ctc_apoptotic, ctc_small
    wbc_like = (kind <= 1) & (rng.uniform(0, 1, n) < pat.ctc_wbc_like_fraction)
    apoptotic, small = kind == 2, kind == 3

    diameter = pat.ctc_diameter_um * rng.lognormal(0, diff.ctc_diameter_within_cv, n)
    diameter = np.where(apoptotic, 0.85 * diameter, diameter)
    diameter = np.where(small, rng.uniform(8.0, 11.5, n), diameter)
    diameter = np.where(wbc_like, np.clip(rng.normal(12.5, 1.5, n), 9.0, 17.0), diameter)
    diameter = np.clip(diameter, 7.0, 34.0)
    nc = np.clip(rng.normal(pat.ctc_nc_ratio, 0.035, n), 0.5, 0.9)
    nc = np.where(small, np.clip(rng.normal(0.8, 0.03, n), 0.7, 0.9), nc)
    nc = np.where(wbc_like, np.clip(rng.normal(0.6, 0.04, n), 0.5, 0.7), nc)
    nc = np.where(apoptotic, rng.uniform(0.45, 0.6, n), nc)
    irr = pat.ctc_irregularity * rng.lognormal(0, 0.3, n)
    irr = np.where(small, 0.6 * irr, irr)
    irr = np.where(apoptotic, 1.6 * irr + 0.03, irr)
    irr = np.where(wbc_like, rng.uniform(0.015, 0.03, n), irr)
    nirr = np.where(wbc_like, 0.02, 0.6 * irr + 0.02)
    nucleoli = np.where(apoptotic, 0, 1 + rng.binomial(3, 0.4, n))
    nucleoli = np.where(small, 1 + rng.binomial(1, 0.3, n), nucleoli)
    nucleoli = np.where(wbc_like, rng.binomial(1, 0.3, n), nucleoli)
    scale = pat.ctc_chromatin_scale_um * rng.lognormal(0, 0.15, n)
    scale = np.where(wbc_like, 0.5 * rng.lognormal(0, 0.1, n), scale)
    contrast = np.where(wbc_like, 0.3, np.where(apoptotic, 0.2, 0.45)) * rng.uniform(0.8, 1.2, n)
    ck = pat.ctc_ck_level * rng.lognormal(0, diff.ctc_ck_sigma, n)
    ck = np.where(kind == 1, rng.uniform(0.005, 0.05, n), ck)  # EMT-like: low whatever the patient
    dapi = np.where(apoptotic, 1.8, np.where(wbc_like, 1.0, 0.85)) * rng.lognormal(0, 0.2, n)
    return {
        "label": np.full(n, "ctc"),
        "subtype": np.array(CTC_SUBTYPES)[kind],
        "wbc_like": wbc_like,
        "cell_diameter_um": diameter,
        "nucleus_diameter_um": nc * diameter,
        "irregularity": irr,
        "nucleus_irregularity": nirr,
        "nucleus_offset": np.where(wbc_like, rng.uniform(0, 0.1, n), rng.uniform(0, 0.15, n)),
        "n_lobes": np.where(apoptotic, rng.integers(3, 7, n), 1),
        "indentation": np.zeros(n),
        "n_nucleoli": nucleoli,
        "chromatin_scale_um": scale,
        "chromatin_contrast": contrast,
        "granularity": np.where(wbc_like, 0.6, 0.35) * rng.uniform(0.7, 1.3, n),
        "dapi_level": dapi,
        "ck_level": ck,
        "ck_fibres": np.ones(n),
        "cd45_level": np.zeros(n),
        "ck_status": np.where(ck < 0.2, "low", "positive"),
        "cd45_status": np.full(n, "negative"),
    }


def _imaging(rng: np.random.Generator, pat: Any, diff: Difficulty, n: int, size: int) -> dict[str, object]:
    defocus = rng.normal(pat.defocus_mean_um, pat.defocus_sd_um, n)
    blur = np.sqrt(_PSF_SIGMA_UM**2 + pat.blur_um**2 + (_DEFOCUS_BLUR * defocus) ** 2)
    off = rng.normal(0, diff.offcentre_sd_px, (n, 2))
    far = rng.uniform(0, 1, n) < diff.offcentre_large_rate
    far_r = rng.uniform(0.08, 0.18, n) * size
    far_a = rng.uniform(0, 2 * np.pi, n)
    off[far, 0] = far_r[far] * np.cos(far_a[far])
    off[far, 1] = far_r[far] * np.sin(far_a[far])
    debris = np.where(rng.uniform(0, 1, n) < diff.debris_rate, rng.integers(1, 4, n), 0)
    has_nb = rng.uniform(0, 1, n) < diff.neighbour_rate
    neighbour = np.where(has_nb, np.where(rng.uniform(0, 1, n) < 0.1, "ctc", "wbc"), "none")
    gs = 0.35 * math.hypot(pat.illum_grad_x, pat.illum_grad_y) + 0.005
    return {
        "bf_defocus_um": defocus,
        "blur_sigma_um": blur,
        "illum_gain": rng.lognormal(0, 0.03, n),
        "illum_grad_x": pat.illum_grad_x + rng.normal(0, gs, n),
        "illum_grad_y": pat.illum_grad_y + rng.normal(0, gs, n),
        "offset_x_px": off[:, 0],
        "offset_y_px": off[:, 1],
        "n_debris": debris,
        "neighbour": neighbour,
    }


def sample_cells(config: SynthConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the patient-level and the cell-level parameters of a cohort.

    Parameters
    ----------
    config
        The cohort to draw; validated first.

    Returns
    -------
    patients : pandas.DataFrame
        One row per patient: ``sample_id``, ``n_cells``, ``n_ctc``, ``ctc_prevalence``, the leukocyte mix,
        imaging parameters (illumination, defocus, blur, stain peaks and backgrounds, camera) and the
        patient's CTC phenotype centroid (``ctc_diameter_um``, ``ctc_irregularity``, ``ctc_nc_ratio``,
        ``ctc_chromatin_scale_um``, ``ctc_ck_level``) and phenotype mix (``ctc_*_fraction``).
    cells : pandas.DataFrame
        One row per cell, patients in order and cells shuffled within a patient: ``cell_id``,
        ``sample_id``, ``label`` (``'ctc'``/``'wbc'``, after label noise), ``label_true``, ``subtype``
        (lymphocyte, neutrophil, monocyte, ctc, ctc_ck_low, ctc_apoptotic, ctc_small), ``wbc_like``,
        ``cell_diameter_um``, ``nucleus_diameter_um`` (diameter of a disc of the nucleus area, roughly),
        ``ck_status``, ``cd45_status`` and the render parameters read by :func:`render_cells`.

    Examples
    --------
    >>> patients, cells = sample_cells(SynthConfig(patients=3, cells_per_patient=50))
    >>> len(patients), len(cells), cells["cell_id"].iloc[0]
    (3, 150, 'P01_C0001')
    """
    config.validate()
    diff = PRESETS[config.difficulty]
    patients = _patient_table(config, diff)
    frames = []
    id_width = max(4, len(str(config.cells_per_patient)))
    for i, pat in enumerate(patients.itertuples(index=False)):
        rng = _rng(config.seed, 1, i)
        n_ctc = int(pat.n_ctc)
        n_wbc = config.cells_per_patient - n_ctc
        wbc = pd.DataFrame(_wbc_cells(rng, pat, diff, n_wbc))
        ctc = pd.DataFrame(_ctc_cells(rng, pat, diff, n_ctc))
        both = pd.concat([df for df in (wbc, ctc) if len(df)], ignore_index=True)
        both = both.iloc[rng.permutation(len(both))].reset_index(drop=True)
        both = pd.concat([both, pd.DataFrame(_imaging(rng, pat, diff, len(both), config.size))], axis=1)
        both.insert(0, "sample_id", pat.sample_id)
        both.insert(0, "cell_id", [f"{pat.sample_id}_C{j + 1:0{id_width}d}" for j in range(len(both))])
        frames.append(both)
    cells = pd.concat(frames, ignore_index=True)
    cells.insert(cells.columns.get_loc("label") + 1, "label_true", cells["label"].copy())
    n_flip = round(config.label_noise * len(cells))
    if n_flip:
        flip = _rng(config.seed, 2).choice(len(cells), size=n_flip, replace=False)
        col = cells.columns.get_loc("label")
        cells.iloc[flip, col] = np.where(cells["label_true"].to_numpy()[flip] == "ctc", "wbc", "ctc")
    for name in ("n_lobes", "n_nucleoli", "n_debris"):
        cells[name] = cells[name].astype(np.int64)
    return patients, cells


def render_cells(
    cells: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    size: int,
    pixel_size_um: float,
    seed: int | np.random.SeedSequence,
) -> tuple[np.ndarray, np.ndarray]:
    """Render cells to DEPArray-like crops.

    Bright-field follows the transport-of-intensity equation for a weak phase object,
    ``I = I0 * (1 - z * laplacian(OPD) - mu * t)`` (Teague 1983), with OPD the optical path difference of a
    spherical cell with a denser nucleus and granular cytoplasm, ``z`` the signed defocus and ``mu * t`` a
    weak absorption; then per-cell illumination gradient and Gaussian defocus blur. Fluorescence channels
    are projected stain densities (DAPI: chromatin; CK: cytoplasm with filament texture; CD45: membrane
    ring), blurred by the same PSF. Every channel receives shot noise (Poisson in photo-electrons, with a
    camera gain) and Gaussian read noise, and is clipped to uint16.

    Parameters
    ----------
    cells, patients
        Tables from :func:`sample_cells` (or edited copies); cells are joined to patients by ``sample_id``.
    size
        Crop size in pixels.
    pixel_size_um
        Pixel size in um.
    seed
        Seed of the fine random detail (outline harmonics, lobes, textures, noise). The function is pure:
        the same inputs give the same pixels.

    Returns
    -------
    images : numpy.ndarray
        uint16 ``[n, 4, size, size]`` in :data:`CHANNELS` order (BF, DAPI, CK, CD45).
    masks : numpy.ndarray
        uint8 ``[n, size, size]``: 0 background, 1 cytoplasm and 2 nucleus of the central cell.

    Examples
    --------
    >>> patients, cells = sample_cells(SynthConfig(patients=1, cells_per_patient=4, size=48))
    >>> images, masks = render_cells(cells, patients, size=48, pixel_size_um=0.64, seed=0)
    >>> images.shape, images.dtype.name, masks.shape
    ((4, 4, 48, 48), 'uint16', (4, 48, 48))
    """
    rng = np.random.default_rng(seed)
    n = len(cells)
    images = np.empty((n, len(CHANNELS), size, size), np.uint16)
    masks = np.empty((n, size, size), np.uint8)
    spectrum = _Spectrum(size + 2 * PAD)
    for start in range(0, n, CHUNK):
        part = cells.iloc[start : start + CHUNK]
        stop = start + len(part)
        bf_rel, fluo, masks[start:stop] = render_signals(
            part, patients, size=size, pixel_size_um=pixel_size_um, rng=rng, spectrum=spectrum
        )
        images[start:stop] = expose(part, patients, bf_rel, fluo, rng)
    return images, masks


def _render_task(
    out: str, cells: pd.DataFrame, patients: pd.DataFrame, size: int, pixel_size_um: float, key: tuple[int, ...]
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Render one chunk of one patient and write its TIFFs; return its masks and mask areas (px)."""
    images, masks = render_cells(
        cells,
        patients,
        size=size,
        pixel_size_um=pixel_size_um,
        seed=np.random.SeedSequence(key[0], spawn_key=key[1:]),
    )
    header = tiff_header(size, size, pixel_size_um)
    folder = os.path.join(out, str(cells["sample_id"].iloc[0]))
    for cell_id, stack in zip(cells["cell_id"], images, strict=True):
        for channel, image in zip(CHANNELS, stack, strict=True):
            write_tiff(os.path.join(folder, f"{cell_id}_{channel}.tif"), image, header)
    areas = np.stack([(masks > 0).sum(axis=(1, 2)), (masks == 2).sum(axis=(1, 2))], axis=1)
    return key, areas, masks


def _to_json(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def generate_cohort(
    out: str | os.PathLike[str],
    config: SynthConfig,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> pathlib.Path:
    """Write a synthetic cohort into the empty folder ``out`` in the DEPArray export layout.

    Layout::

        out/<sample_id>/<cell_id>_<CHANNEL>.tif   one uint16 baseline TIFF per cell and channel
        out/labels.csv                             cell_id, sample_id, label, label_true, subtype, ...
        out/cohort.json                            config, difficulty, patient parameters, channels, version
        out/masks.npy                              only with config.masks: uint8 [N, size, size]
        out/clinical.csv                           only with config.outcomes: sample_id, time_months, event, ...

    ``labels.csv`` holds every column of the cell table of :func:`sample_cells` (ground truth and render
    parameters) plus ``cell_area_um2`` and ``nucleus_area_um2`` measured on the rendered masks; its rows
    are in the order of ``masks.npy``. The TIFFs are uncompressed baseline TIFFs with the pixel size as
    resolution; no timestamps, so the same seed gives byte-identical files. ``clinical.csv`` holds survival
    outcomes drawn from each patient's true CTC count (:func:`ctcid.synth.outcomes.sample_outcomes`).

    Parameters
    ----------
    out
        An existing, empty folder (the caller creates it, typically through an atomic rename).
    config
        The cohort to generate; validated first.
    workers
        Processes that render chunks in parallel; default all usable cores, 1 renders in this process.
        The output is byte-identical whatever the number of workers.
    progress
        Called with the number of cells just finished, after each chunk.

    Returns
    -------
    pathlib.Path
        ``Path(out)``.

    Raises
    ------
    CtcidError
        ``out`` is missing or not empty, a value of ``config`` or ``workers`` is invalid, or a file cannot
        be written.
    """
    out = _empty_target(out, config, workers, "synthetic cohorts")
    patients, cells = sample_cells(config)
    with _writing(out, "the cohort", config, patients):
        for sample_id in patients["sample_id"]:
            (out / sample_id).mkdir()
        areas, masks = _render_all(out, config, patients, cells, workers or usable_cores(), progress)
        _write_tables(out, config, patients, cells, areas, masks)
    return out


def _empty_target(
    out: str | os.PathLike[str], config: SynthConfig, workers: int | None, what: str
) -> pathlib.Path:
    """``out`` as a path, once ``config`` and ``workers`` are valid and ``out`` is an existing, empty folder."""
    config.validate()
    out = pathlib.Path(out)
    if not out.is_dir():
        raise CtcidError("is not a folder; create it first", out)
    if any(out.iterdir()):
        raise CtcidError(f"is not empty; {what} are written into an empty folder", out)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise CtcidError(f"workers must be a whole number >= 1, got {workers!r}")
    return out


@contextlib.contextmanager
def _writing(out: pathlib.Path, what: str, config: SynthConfig, patients: pd.DataFrame) -> Iterator[None]:
    """Write ``what`` into ``out`` in the body, then the clinical table when ``config.outcomes`` asks for it; a
    failed write becomes one :class:`~ctcid.errors.CtcidError` naming ``out``."""
    try:
        yield
        if config.outcomes:
            write_clinical(out, patients, seed=config.seed)
    except OSError as exc:
        raise CtcidError(f"cannot write {what}: {exc.strerror or exc}", out) from None


def _render_all(
    out: pathlib.Path,
    config: SynthConfig,
    patients: pd.DataFrame,
    cells: pd.DataFrame,
    workers: int,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Render and write every chunk; return the mask areas (px) and, with ``config.masks``, the masks."""
    tasks = []
    bounds = {}
    start = 0
    for i in range(len(patients)):
        n = int(patients["n_cells"].iloc[i])
        for j, lo in enumerate(range(0, n, CHUNK)):
            hi = min(lo + CHUNK, n)
            key = (config.seed, 3, i, j)
            bounds[key] = (start + lo, start + hi)
            tasks.append((str(out), cells.iloc[start + lo : start + hi], patients.iloc[[i]], key))
        start += n

    areas = np.zeros((len(cells), 2), np.int64)
    masks = np.zeros((len(cells), config.size, config.size), np.uint8) if config.masks else None

    def collect(result: tuple[tuple[int, ...], np.ndarray, np.ndarray]) -> None:
        key, area, mask = result
        lo, hi = bounds[key]
        areas[lo:hi] = area
        if masks is not None:
            masks[lo:hi] = mask
        if progress is not None:
            progress(hi - lo)

    n_workers = min(workers, len(tasks))
    if n_workers <= 1:
        for out_s, part, pat, key in tasks:
            collect(_render_task(out_s, part, pat, config.size, config.pixel_size_um, key))
        return areas, masks
    with process_pool(n_workers) as pool:
        futures = [
            pool.submit(_render_task, out_s, part, pat, config.size, config.pixel_size_um, key)
            for out_s, part, pat, key in tasks
        ]
        try:
            for future in as_completed(futures):
                collect(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return areas, masks


def _write_tables(
    out: pathlib.Path,
    config: SynthConfig,
    patients: pd.DataFrame,
    cells: pd.DataFrame,
    areas: np.ndarray,
    masks: np.ndarray | None,
) -> None:
    """Write labels.csv, cohort.json and (if rendered) masks.npy."""
    px2 = config.pixel_size_um**2
    labels = cells.copy()
    labels.insert(labels.columns.get_loc("nucleus_diameter_um") + 1, "cell_area_um2", areas[:, 0] * px2)
    labels.insert(labels.columns.get_loc("cell_area_um2") + 1, "nucleus_area_um2", areas[:, 1] * px2)
    labels.to_csv(out / "labels.csv", index=False, float_format="%.6g", lineterminator="\n")

    meta = {
        "format": "ctcid-synth-cohort",
        "format_version": FORMAT_VERSION,
        "channels": list(CHANNELS),
        "pixel_size_um": config.pixel_size_um,
        "size": config.size,
        "n_cells": len(cells),
        "n_ctc": int((cells["label_true"] == "ctc").sum()),
        "config": config.to_dict(),
        "difficulty": PRESETS[config.difficulty].to_dict(),
        "patients": patients.to_dict(orient="records"),
    }
    (out / "cohort.json").write_text(json.dumps(_to_json(meta), indent=2) + "\n", encoding="utf-8")
    if masks is not None:
        np.save(out / "masks.npy", masks, allow_pickle=False)
