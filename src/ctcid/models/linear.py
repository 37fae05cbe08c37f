"""A logistic regression in a portable form: plain arrays in safetensors, evaluated with numpy.

scikit-learn fits the coefficients (:mod:`ctcid.train.linear`); the bundle keeps what turns a raw feature row into
a logit: the value that fills a missing measure, the standardisation (mean and scale of the training cells), the
clip applied to standardised values, the coefficients and the intercept. Nothing is pickled. The logit is
``intercept + sum(coef * z)`` with ``z = clip((fill_missing(x) - mean) / scale)``, and each term ``coef * z`` is
that feature's contribution in logit units against the training mean (where ``z`` is 0).

Examples
--------
>>> m = LinearModel(np.array([2.0, -1.0]), 0.5, mean=np.zeros(2), scale=np.ones(2), fill=np.zeros(2))
>>> m.decision_function(np.array([[1.0, np.nan]])).tolist()
[2.5]
>>> m.contributions(np.array([[1.0, 3.0]])).tolist()
[[2.0, -3.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LinearModel"]

_ARRAYS = ("coef", "mean", "scale", "fill")


@dataclass
class LinearModel:
    """Coefficients on standardised features and the standardisation itself, all ``[n_features]`` float64."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    fill: np.ndarray
    clip: float = float("inf")

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name), np.float64).reshape(-1))
        n = len(self.coef)
        if any(len(getattr(self, k)) != n for k in _ARRAYS):
            raise ValueError("coefficient, mean, scale and fill arrays have different lengths")
        if not all(np.isfinite(getattr(self, k)).all() for k in _ARRAYS) or not np.isfinite(self.intercept):
            raise ValueError("linear model arrays hold non-finite values")
        if (self.scale <= 0).any():
            raise ValueError("linear model scales must be > 0")
        if not self.clip > 0:
            raise ValueError("linear model clip must be > 0")
        self.intercept = float(self.intercept)
        self.clip = float(self.clip)

    @property
    def n_features(self) -> int:
        return len(self.coef)

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """Standardised, clipped values ``[n, F]`` of raw feature rows (missing or infinite values filled)."""
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected [n, {self.n_features}] features, got {X.shape}")
        z = (np.where(np.isfinite(X), X, self.fill[None, :]) - self.mean) / self.scale
        return np.clip(z, -self.clip, self.clip)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logit of the positive class for each row of ``X`` ``[n, F]`` (NaN = missing)."""
        return self.standardise(X) @ self.coef + self.intercept

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions ``[n, F]`` in logit units: coefficient x standardised value."""
        return self.standardise(X) * self.coef[None, :]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays, for safetensors."""
        return {
            **{k: np.ascontiguousarray(getattr(self, k)) for k in _ARRAYS},
            "intercept": np.array([self.intercept], np.float64),
            "clip": np.array([self.clip], np.float64),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> LinearModel:
        """Rebuild from :meth:`state_dict` arrays, checked (lengths, finite values, positive scales)."""
        missing = [k for k in (*_ARRAYS, "intercept", "clip") if k not in state]
        if missing:
            raise ValueError(f"linear model arrays lack {', '.join(missing)}")
        return cls(
            **{k: state[k] for k in _ARRAYS},
            intercept=float(np.ravel(state["intercept"])[0]),
            clip=float(np.ravel(state["clip"])[0]),
        )
