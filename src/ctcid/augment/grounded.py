"""Augmentation strengths grounded in the data: as much variation as the training patients actually show.

Augmentation should teach invariance to the variation a model will meet on new patients, not invent variation
that never occurs (which only blurs the evidence). :func:`measure_variation` measures, on the training cells
after the same scaling the network sees (window or flat-field), each patient's typical background level,
contrast, noise, sharpness, illumination ramp and cell position; :func:`grounded_config` turns the spread of
those between patients into the ranges of :class:`AugmentConfig`:

==================  ===========================================================================================
parameter           from
==================  ===========================================================================================
``brightness``      twice the between-patient standard deviation of the crop background level
``contrast``        twice the between-patient standard deviation of the log of the crop contrast
``gamma_range``     off (1, 1): no measure of a non-linearity
``gaussian_std``    the extra noise that brings the quietest patients (5th percentile) to the noisiest (95th)
``poisson_p``       off: the measured noise already includes the shot noise
``blur_sigma``      the blur that lowers the sharpest patients' sharpness to the softest patients'
``uneven``          the 95th percentile of the within-crop illumination ramp
``shift_frac``      twice the standard deviation of the cell's offset from the crop centre
``scale_range``     +/- 5% (one pixel size within a dataset)
``artefact_*``      specks as faint as the typical cell contrast and up to four times it
==================  ===========================================================================================

Rotations and flips stay full: cells have no preferred orientation on a slide. Which families are switched on is
not decided here (see ``TrainConfig.augment``).

Examples
--------
>>> import torch
>>> x = 0.5 + 0.02 * torch.randn(40, 1, 32, 32)
>>> stats = measure_variation(x, np.repeat(np.arange(4), 10))
>>> cfg = grounded_config(AugmentConfig(), stats)
>>> cfg.gamma_range, cfg.poisson_p, 0.0 <= cfg.brightness < 0.05
((1.0, 1.0), 0.0, True)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import border_median, border_strips
from .batch import AugmentConfig

__all__ = ["grounded_config", "measure_variation"]

#: Border width (px) whose median is a crop's background, and where its noise is measured.
_BORDER = 4


def _per_cell(x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-cell, per-channel measures of a windowed batch ``[N, C, H, W]``."""
    b = _BORDER
    background = border_median(x, b)
    dev = (x - background[..., None, None]).abs()
    contrast = dev.flatten(-2).std(dim=-1)
    lap = F.conv2d(
        x.flatten(0, 1)[:, None],
        torch.tensor([[[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]]], dtype=x.dtype),
    ).reshape(x.shape[0], x.shape[1], x.shape[2] - 2, x.shape[3] - 2)
    lap_border = torch.cat([lap[..., : b - 1, :].flatten(-2), lap[..., -(b - 1) :, :].flatten(-2)], dim=-1)
    noise = 1.4826 * (lap_border - lap_border.median(dim=-1, keepdim=True).values).abs().median(dim=-1).values
    noise = noise / np.sqrt(20.0)  # the Laplacian of white noise of variance s^2 has variance 20 s^2
    sharpness = lap.flatten(-2).var(dim=-1) / contrast.clamp_min(1e-6) ** 2
    h, w = x.shape[-2:]
    rows = torch.arange(h, dtype=x.dtype)
    cols = torch.arange(w, dtype=x.dtype)
    weight = dev.sum(dim=1)  # all channels together: where the cell is
    total = weight.flatten(-2).sum(-1).clamp_min(1e-6)
    cy = (weight.sum(-1) * rows).sum(-1) / total - (h - 1) / 2
    cx = (weight.sum(-2) * cols).sum(-1) / total - (w - 1) / 2
    top, bottom, left, right = (strip.median(-1).values for strip in border_strips(x, b))
    ramp = torch.hypot(bottom - top, right - left) / (2 * background.abs().clamp_min(1e-3))
    return {
        "background": background.numpy(),
        "contrast": contrast.numpy(),
        "noise": noise.numpy(),
        "sharpness": sharpness.numpy(),
        "ramp": ramp.numpy(),
        "offset": (torch.hypot(cx, cy) / max(h, w)).numpy(),
    }


def measure_variation(x: torch.Tensor, patient: np.ndarray) -> dict[str, Any]:
    """Per-patient medians of each measure (per channel) of windowed training cells ``x`` ``[N, C, H, W]``
    (``patient`` gives each cell's patient), and the spread of the cell offsets."""
    cells = _per_cell(x.detach().float().cpu())
    patient = np.asarray(patient)
    names = np.unique(patient)
    out: dict[str, Any] = {"patients": len(names), "cells": len(patient)}
    for key, values in cells.items():
        per = np.stack([np.median(values[patient == p], axis=0) for p in names])  # [P, C] (or [P])
        out[key] = per
    out["offset_sd"] = float(np.sqrt(np.mean(cells["offset"] ** 2)))
    return out


def _spread(per: np.ndarray, q: tuple[float, float] = (5, 95)) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.percentile(per, q, axis=0)
    return lo, hi


def grounded_config(base: AugmentConfig, stats: dict[str, Any]) -> AugmentConfig:
    """``base`` with its strength ranges set from the measured variation (see the module table); the family
    switches and the geometric orientation options are kept."""
    bg_sd = float(np.max(np.std(stats["background"], axis=0)))
    log_contrast = np.log(np.maximum(stats["contrast"], 1e-6))
    contrast = float(np.clip(np.expm1(2 * np.max(np.std(log_contrast, axis=0))), 0.0, 0.5))
    noise_lo, noise_hi = _spread(stats["noise"])
    extra_noise = float(np.max(np.sqrt(np.maximum(noise_hi**2 - noise_lo**2, 0.0))))
    sharp_lo, sharp_hi = _spread(np.log(np.maximum(stats["sharpness"], 1e-12)))
    ratio = float(np.max(np.exp(sharp_hi - sharp_lo)))  # sharpest / softest patients
    blur_hi = float(np.clip(0.7 * np.sqrt(max(ratio - 1.0, 0.0)), 0.3, 2.5))
    ramp = float(np.clip(np.percentile(stats["ramp"], 95), 0.0, 0.5))
    typical = float(np.median(stats["contrast"]))
    return dataclasses.replace(
        base,
        brightness=float(np.clip(2 * bg_sd, 0.0, 0.5)),
        contrast=contrast,
        gamma_range=(1.0, 1.0),
        gaussian_std=float(np.clip(extra_noise, 0.0, 0.2)),
        poisson_p=0.0,
        blur_sigma=(min(0.3, blur_hi), blur_hi),
        uneven=ramp,
        shift_frac=float(np.clip(2 * stats["offset_sd"], 0.02, 0.2)),
        scale_range=(0.95, 1.05),
        artefact_amplitude=(float(np.clip(typical, 0.0, 0.25)), float(np.clip(4 * typical, 0.0, 1.0))),
    )
