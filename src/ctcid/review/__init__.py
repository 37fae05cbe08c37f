"""Operator review: confirm or reject calls in the browser, keep every decision, count, and learn from them.

``ctcid review PREDICT_OUT`` serves :func:`create_app` over a :class:`ReviewSession`: review queues (candidates,
undecided, random leukocytes, mixed), cells drawn with fixed display windows (:mod:`ctcid.report.display`),
decisions logged to SQLite as they are made, per-sample reviewed counts with exact intervals, and labels
exported for ``ctcid train --labels``. :func:`simulate_active_learning` measures how many labels the app's
queue saves against random review; :func:`bench_review` measures its latency at 100,000 cells.
"""

from __future__ import annotations

from ..report.display import DisplayWindows, fixed_window, panel_png, to_display
from .active import simulate_active_learning
from .app import create_app, is_loopback, serve
from .bench import bench_review
from .counts import poisson_binomial_interval, poisson_binomial_pmf
from .queue import MIX, QUEUES, queue_orders
from .session import ReviewRequestError, ReviewSession, export_labels
from .store import DECISIONS, DecisionStore

__all__ = [
    "DECISIONS",
    "MIX",
    "QUEUES",
    "DecisionStore",
    "DisplayWindows",
    "ReviewRequestError",
    "ReviewSession",
    "bench_review",
    "create_app",
    "export_labels",
    "fixed_window",
    "is_loopback",
    "panel_png",
    "poisson_binomial_interval",
    "poisson_binomial_pmf",
    "queue_orders",
    "serve",
    "simulate_active_learning",
    "to_display",
]
