"""Worker processes shared by every step that runs in parallel (ingest, synth, segmentation and features)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

__all__ = ["START_METHOD", "process_pool", "usable_cores"]

#: Worker start method: fork where it is safe and cheap (Linux; no ``if __name__ == "__main__"`` guard
#: needed in the calling script), spawn elsewhere.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which container limits set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started with :data:`START_METHOD`."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(START_METHOD))
