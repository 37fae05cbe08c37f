"""Worker processes shared by every step that runs in parallel (ingest, synth, segmentation and features)."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

__all__ = ["START_METHOD", "in_order", "optional_pool", "process_pool", "usable_cores", "worker_count"]

T = TypeVar("T")

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


def worker_count(requested: int | None, items: int, least: int) -> int:
    """Worker processes for ``items`` items: ``requested``, or by default every usable core up to 16; 0 (work in
    this process) when there are fewer than ``least`` items.

    >>> worker_count(4, 100, 2), worker_count(4, 1, 2)
    (4, 0)
    """
    if items < least:
        return 0
    return requested if requested is not None else min(usable_cores(), 16)


@contextlib.contextmanager
def optional_pool(
    workers: int, on_error: Sequence[Callable[[], None]] = ()
) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of ``workers`` processes, or ``None`` for 0 (work in this process), shut down at the end.

    When the body fails, the ``on_error`` callbacks run (e.g. closing half-written outputs), then the pool is shut
    down without waiting for the work still pending, which is cancelled.
    """
    pool = process_pool(workers) if workers > 0 else None
    try:
        yield pool
    except BaseException:
        for undo in on_error:
            undo()
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool:
        pool.shutdown()


def in_order(
    pool: ProcessPoolExecutor | None, fn: Callable[..., T], items: Sequence[Any], ahead: int, *args: Any
) -> Iterator[tuple[int, T]]:
    """``(i, fn(items[i], *args))`` for every item, in order.

    With a ``pool``, at most ``ahead`` items are submitted ahead of the one being returned (a bounded read-ahead,
    so memory stays flat however many items there are); without one, each item runs in this process when its
    turn comes.

    >>> list(in_order(None, pow, [2, 3], 2, 2))
    [(0, 4), (1, 9)]
    """
    pending: collections.deque[tuple[int, Future | None]] = collections.deque()
    next_item = 0
    while next_item < len(items) or pending:
        while next_item < len(items) and len(pending) < ahead:
            pending.append((next_item, pool.submit(fn, items[next_item], *args) if pool else None))
            next_item += 1
        index, future = pending.popleft()
        yield index, future.result() if future else fn(items[index], *args)
