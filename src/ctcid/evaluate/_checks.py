"""Input coercion shared by the evaluation functions: array-likes in, fresh NumPy arrays out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import CtcidError

__all__ = ["as_binary", "as_labels", "as_sample_ids", "as_scores", "check_lengths"]

_LABEL_NAMES = {"ctc": 1, "wbc": 0, "": -1, "unlabelled": -1, "unlabeled": -1}


def _array(values: object) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):
        values = values.to_numpy()
    arr = np.array(values, copy=True)
    if arr.ndim == 0:
        raise ValueError("expected a one-dimensional array-like, got a scalar")
    if arr.ndim != 1:
        raise ValueError(f"expected a one-dimensional array-like, got shape {arr.shape}")
    return arr


def as_sample_ids(sample_ids: object) -> np.ndarray:
    """Patient identifiers as a NumPy array of ``str``; a missing identifier is an error."""
    arr = _array(sample_ids)
    if arr.size == 0:
        return arr.astype(str)
    missing = np.asarray(pd.isna(arr), dtype=bool)
    if missing.any():
        raise CtcidError(f"{int(missing.sum())} cell(s) have no sample_id; every cell must belong to a patient")
    return arr.astype(str)


def as_labels(labels: object) -> np.ndarray:
    """Class labels as int64: 1 CTC, 0 WBC, -1 unlabelled.

    Accepts integers/booleans (1, 0, -1) or the class names ``ctc``/``wbc`` with empty or missing
    values meaning unlabelled.
    """
    arr = _array(labels)
    if arr.dtype.kind in "OUS":
        out = np.empty(arr.shape, dtype=np.int64)
        for i, v in enumerate(arr):
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
                out[i] = -1
                continue
            key = str(v).strip().lower()
            if key in _LABEL_NAMES:
                out[i] = _LABEL_NAMES[key]
            elif key in {"1", "0", "-1"}:
                out[i] = int(key)
            else:
                raise CtcidError(f"unknown label {v!r}; expected 'ctc', 'wbc' or empty (or 1, 0, -1)")
        return out
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            arr = np.where(np.isnan(arr), -1.0, arr)
        if not np.all(arr == np.round(arr)):
            raise CtcidError("labels must be 1 (CTC), 0 (WBC) or -1 (unlabelled), got fractional values")
    out = arr.astype(np.int64)
    bad = ~np.isin(out, (-1, 0, 1))
    if bad.any():
        raise CtcidError(
            f"labels must be 1 (CTC), 0 (WBC) or -1 (unlabelled); found {sorted(set(out[bad].tolist()))[:5]}"
        )
    return out


def as_binary(y: object, name: str = "y_true") -> np.ndarray:
    """A 0/1 label array (int64); unlabelled cells (-1) are refused with a hint."""
    out = as_labels(y)
    if (out < 0).any():
        raise CtcidError(
            f"{name} holds {int((out < 0).sum())} unlabelled cell(s) (label -1); drop them before evaluating"
        )
    return out


def as_scores(values: object, name: str = "p", *, probability: bool = True) -> np.ndarray:
    """Finite float64 scores; with ``probability`` they must lie in [0, 1]."""
    arr = _array(values)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise CtcidError(f"{name} must be numeric") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        raise CtcidError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf); check the model outputs"
        )
    if probability and arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise CtcidError(
            f"{name} must be probabilities in [0, 1] (got {arr.min():.3g}..{arr.max():.3g}); "
            "pass logits through the calibration first"
        )
    return arr


def check_lengths(**arrays: Sequence | np.ndarray | None) -> int:
    """All given arrays have one length; return it."""
    sizes = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(f"inputs must have the same length, got {detail}")
    return next(iter(sizes.values()), 0)
