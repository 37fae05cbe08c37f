"""Which cells a reviewer sees first: the review queues, indexed once.

Like CellProfiler Analyst's "fetch", three queues are mixed:

``candidates``
    Cells called CTC, most probable first: every reported CTC should be confirmed by a person.
``undecided``
    All cells, nearest the decision threshold first: ranked by ``|logit(p_ctc) - logit(threshold)|``, the
    distance on the calibrated logit scale, so the ranking does not depend on how an uncertainty column is
    defined.
``random``
    Cells called leukocyte in a seeded random order: the only way to catch the CTCs the model missed.

``mixed`` interleaves them by the shares in :data:`MIX` (half undecided, 30% candidates, 20% random); a cell
in more than one queue comes at its earliest place. The same orders choose the cells to label in the active
learning benchmark (:func:`ctcid.review.simulate_active_learning`), so the benchmark measures the queue the
app shows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIX", "QUEUES", "calibrated_logit", "next_cells", "queue_orders"]

#: Shares of the mixed queue.
MIX: dict[str, float] = {"undecided": 0.5, "candidates": 0.3, "random": 0.2}
#: Queue names, the mixed one first.
QUEUES = ("mixed", "candidates", "undecided", "random")
_EPS = 1e-7


def calibrated_logit(p: object) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped away from 0 and 1.

    Examples
    --------
    >>> calibrated_logit([0.5, 0.880797]).round(3).tolist()
    [0.0, 2.0]
    """
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(q) - np.log1p(-q)


def queue_orders(
    p: object,
    threshold: float,
    called: object | None = None,
    *,
    seed: int = 0,
    mix: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """The order of the cells in each queue (row indices into ``p``).

    Parameters
    ----------
    p
        Calibrated probability of each cell.
    threshold
        The decision threshold on ``p``.
    called
        Whether each cell is called CTC (default ``p >= threshold``); the predictions' ``call`` column.
    seed
        Seed of the random queue's order.
    mix
        Shares of the mixed queue (default :data:`MIX`).

    Returns
    -------
    dict
        ``candidates`` (called cells only), ``undecided`` (all cells), ``random`` (cells not called) and
        ``mixed`` (all cells), each an int64 array of rows.

    Examples
    --------
    >>> o = queue_orders([0.8, 0.1, 0.45, 0.6, 0.02], 0.5)
    >>> o["candidates"].tolist(), o["undecided"].tolist()
    ([0, 3], [2, 3, 0, 1, 4])
    >>> sorted(o["mixed"].tolist()) == list(range(5))
    True
    """
    p = np.asarray(p, dtype=np.float64)
    is_called = p >= threshold if called is None else np.asarray(called, dtype=bool)
    shares = MIX if mix is None else mix
    z = calibrated_logit(p)
    zt = float(calibrated_logit(threshold))
    pos = np.flatnonzero(is_called)
    orders = {
        "candidates": pos[np.argsort(-p[pos], kind="stable")],
        "undecided": np.argsort(np.abs(z - zt), kind="stable"),
        "random": np.random.default_rng(seed).permutation(np.flatnonzero(~is_called)),
    }
    # mixed: the k-th cell of a queue with share s sits at (k + 0.5) / s; a cell takes its earliest place
    place = np.full(len(p), np.inf)
    for name, share in shares.items():
        rows = orders[name]
        if share > 0 and len(rows):
            np.minimum.at(place, rows, (np.arange(len(rows)) + 0.5) / share)
    orders["mixed"] = np.argsort(place, kind="stable")
    return {k: v.astype(np.int64) for k, v in orders.items()}


def next_cells(order: np.ndarray, eligible: np.ndarray, limit: int, skip: int = 0) -> np.ndarray:
    """The first ``limit`` rows of ``order`` (after ``skip``) for which ``eligible`` is true; no Python loop.

    Examples
    --------
    >>> next_cells(np.array([3, 0, 2, 1]), np.array([True, False, True, True]), 2).tolist()
    [3, 0]
    """
    keep = order[eligible[order]]
    return keep[skip : skip + limit]
