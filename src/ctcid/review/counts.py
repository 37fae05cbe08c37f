"""The number of CTCs among cells not yet confirmed: exact Poisson-binomial distribution and interval.

Cells with calibrated probabilities ``p_i``, taken as independent, hold a Poisson-binomial number of CTCs. Its
distribution is the product of the polynomials ``(1 - p_i) + p_i z``; the product is formed pairwise, all pairs
of a level at once (direct convolution for short polynomials, FFT for long ones), and truncated past the
count whose upper tail is negligible, so a sample of 100,000 cells takes milliseconds and no cell is looped over
in Python. The interval is the equal-tailed one of the exact distribution, in whole cells (no normal
approximation, so it stays honest when the expected count is below one).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["poisson_binomial_interval", "poisson_binomial_pmf"]

_DIRECT = 64  # polynomial length below which direct convolution is used


def _multiply_pairs(a: np.ndarray, b: np.ndarray, keep: int) -> np.ndarray:
    """Row-wise products of polynomials ``a[i] * b[i]`` (coefficients in increasing degree), first ``keep``."""
    n, la = a.shape
    lb = b.shape[1]
    full = la + lb - 1
    if la <= _DIRECT:
        out = np.zeros((n, full))
        for j in range(la):  # over coefficients, vectorised over every pair
            out[:, j : j + lb] += a[:, j : j + 1] * b
    else:
        size = 1 << (full - 1).bit_length()
        out = np.fft.irfft(np.fft.rfft(a, size, axis=1) * np.fft.rfft(b, size, axis=1), size, axis=1)[:, :full]
        np.clip(out, 0.0, None, out=out)
    return out[:, :keep]


def poisson_binomial_pmf(p: object, kmax: int | None = None) -> np.ndarray:
    """Probabilities of 0, 1, ..., ``kmax`` successes among independent trials with probabilities ``p``.

    Parameters
    ----------
    p
        Success probabilities (clipped to [0, 1]).
    kmax
        Largest count kept (default: all, ``len(p)``); the mass above it is dropped.

    Examples
    --------
    >>> poisson_binomial_pmf([0.5, 0.5]).round(3).tolist()
    [0.25, 0.5, 0.25]
    >>> poisson_binomial_pmf([0.2, 0.5, 0.9], kmax=1).round(3).tolist()
    [0.04, 0.41]
    """
    q = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, 1.0)
    keep = len(q) + 1 if kmax is None else min(int(kmax), len(q)) + 1
    if len(q) == 0:
        return np.ones(1)
    polys = np.stack([1.0 - q, q], axis=1)[:, :keep]
    while len(polys) > 1:
        if len(polys) % 2:
            one = np.zeros((1, polys.shape[1]))
            one[0, 0] = 1.0
            polys = np.concatenate([polys, one])
        polys = _multiply_pairs(polys[0::2], polys[1::2], keep)
    out = np.zeros(keep)
    out[: polys.shape[1]] = polys[0]
    return out


def poisson_binomial_interval(p: object, level: float = 0.95) -> tuple[float, int, int]:
    """Mean and equal-tailed ``level`` interval (whole counts) of the number of successes.

    Parameters
    ----------
    p
        Success probabilities of independent trials.
    level
        Coverage of the interval.

    Returns
    -------
    mean, lo, hi
        ``sum(p)``, and the smallest counts whose cumulative probability reaches ``(1 - level) / 2`` and
        ``(1 + level) / 2``.

    Examples
    --------
    >>> poisson_binomial_interval([0.5] * 10)
    (5.0, 2, 8)
    >>> poisson_binomial_interval([0.01] * 30)   # expected 0.3: the interval is [0, 2], not 0.3 ± 0.6
    (0.3, 0, 2)
    """
    q = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, 1.0)
    mean = float(q.sum())
    if len(q) == 0:
        return 0.0, 0, 0
    sd = math.sqrt(float((q * (1.0 - q)).sum()))
    kmax = math.ceil(mean + 12.0 * sd + 20.0)
    cdf = np.cumsum(poisson_binomial_pmf(q, kmax))
    tail = (1.0 - level) / 2.0
    lo = int(np.searchsorted(cdf, tail - 1e-12))
    hi = int(min(np.searchsorted(cdf, 1.0 - tail - 1e-12), len(q)))
    return round(mean, 6), lo, hi
