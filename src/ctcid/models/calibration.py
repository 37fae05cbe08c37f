"""The calibration map of a model bundle: raw logits to calibrated CTC probabilities.

Fitted on validation patients by :func:`ctcid.evaluate.fit_calibration` (see :mod:`ctcid.evaluate.calibration`
for the method), stored in ``model.json`` and applied by every engine (PyTorch, ONNX, the trees) in the same
numpy code after the logits are computed, so they cannot disagree.

Examples
--------
>>> cal = Calibration(prior_shift=2.0, slope=0.5, intercept=0.1)
>>> cal.logits([2.0, 4.0]).round(3).tolist()
[0.1, 1.1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

from ..errors import CtcidError

__all__ = ["CALIBRATION_METHODS", "Calibration", "logit"]

CALIBRATION_METHODS = ("platt", "isotonic", "temperature", "none")
_EPS = 1e-6


def _finite(values: object) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.isfinite(arr).all():
        raise CtcidError(
            f"logits hold {int((~np.isfinite(arr)).sum())} non-finite value(s); check the model outputs"
        )
    return arr


def logit(p: object) -> np.ndarray:
    """``log(p / (1 - p))``, with ``p`` clipped to [1e-6, 1 - 1e-6].

    >>> logit([0.5, 0.9]).round(4).tolist()
    [0.0, 2.1972]
    """
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(q) - np.log1p(-q)


@dataclass(frozen=True)
class Calibration:
    """How raw model logits become calibrated CTC probabilities (stored in the model bundle).

    Attributes
    ----------
    method
        ``platt``, ``isotonic``, ``temperature`` (bundles of format 1) or ``none``.
    prior_shift
        Subtracted from raw logits first: the log of the class weight training applied (0 without one).
    slope, intercept
        Platt map of the shifted logit ``z``: ``p = sigmoid(slope * z + intercept)``.
    cov
        Covariance of ``(slope, intercept)`` (Laplace approximation of the fit on the validation cells).
    temperature
        ``p = sigmoid(z / temperature)`` for ``method="temperature"``.
    iso_x, iso_y
        Isotonic map: shifted logits and probabilities, linearly interpolated, clipped at the ends.
    n_cells, n_ctc
        Validation cells and CTCs the map was fitted on.
    between
        Between-patient variance of a logit offset: how far one patient's calibration strays from the map
        (estimated from the validation patients; widens the expected count's interval).
    """

    method: str = "platt"
    prior_shift: float = 0.0
    slope: float = 1.0
    intercept: float = 0.0
    cov: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    temperature: float = 1.0
    iso_x: tuple[float, ...] = field(default_factory=tuple)
    iso_y: tuple[float, ...] = field(default_factory=tuple)
    n_cells: int = 0
    n_ctc: int = 0
    between: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise CtcidError(
                f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}"
            )
        if self.method == "temperature" and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CtcidError(f"temperature must be a positive number, got {self.temperature}")

    # ------------------------------------------------------------------ applying
    def shifted(self, raw_logits: object) -> np.ndarray:
        """Raw logits minus the prior shift (the ``z`` the map reads)."""
        return _finite(raw_logits) - self.prior_shift

    def logits(self, raw_logits: object) -> np.ndarray:
        """Calibrated logits of raw model logits."""
        z = self.shifted(raw_logits)
        if self.method == "platt":
            return self.slope * z + self.intercept
        if self.method == "temperature":
            return z / self.temperature
        if self.method == "isotonic":
            return logit(self._isotonic(z))
        return z

    def probabilities(self, raw_logits: object) -> np.ndarray:
        """Calibrated CTC probabilities of raw model logits."""
        z = self.shifted(raw_logits)
        if self.method == "isotonic":
            return self._isotonic(z)
        return expit(self.logits(raw_logits))

    def _isotonic(self, z: np.ndarray) -> np.ndarray:
        x, y = np.asarray(self.iso_x), np.asarray(self.iso_y)
        if x.size == 0:
            return expit(z)
        return np.interp(z, x, y)

    def covariance(self) -> np.ndarray:
        """``[2, 2]`` covariance of (slope, intercept); zeros when the map has none."""
        return np.asarray(self.cov, dtype=np.float64) if self.method == "platt" else np.zeros((2, 2))

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the bundle's ``calibration`` section)."""
        return {
            "method": self.method,
            "prior_shift": float(self.prior_shift),
            "slope": float(self.slope),
            "intercept": float(self.intercept),
            "cov": [[float(v) for v in row] for row in self.cov],
            "temperature": float(self.temperature),
            "iso_x": [float(v) for v in self.iso_x],
            "iso_y": [float(v) for v in self.iso_y],
            "n_cells": int(self.n_cells),
            "n_ctc": int(self.n_ctc),
            "between": float(self.between),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys are refused.

        >>> Calibration.from_dict({"method": "temperature", "temperature": 2.0}).probabilities([2.0]).round(4)
        array([0.7311])
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CtcidError(f"unknown calibration field(s) {', '.join(unknown)}")
        values = dict(data)
        if "cov" in values:
            values["cov"] = tuple(tuple(float(v) for v in row) for row in values["cov"])
        for key in ("iso_x", "iso_y"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    @classmethod
    def from_temperature(cls, temperature: float) -> Calibration:
        """The calibration of a bundle that recorded only a temperature."""
        return cls(method="temperature", temperature=float(temperature))
