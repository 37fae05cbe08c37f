"""Console output shared by the commands: notes and progress on stderr, results on stdout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def note(message: str) -> None:
    """A one-line note on stderr (markup-free, so paths with brackets print as they are)."""
    err.print(message, markup=False)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar, shown from the first update on; yields ``update(done, total=None)`` (absolute counts)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    task = bar.add_task(description, total=total)
    started = False

    def update(done: int, new_total: int | None = None) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done, total=new_total if new_total is not None else bar.tasks[0].total)

    try:
        yield update
    finally:
        if started:
            bar.stop()


def table(df, title: str | None = None) -> None:
    """Print a DataFrame as a rich table on stdout."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in df.columns:
        t.add_column(str(col), justify="right" if df[col].dtype.kind in "iuf" else "left")
    for row in df.itertuples(index=False):
        t.add_row(
            *[
                ""
                if v is None or (isinstance(v, float) and v != v)
                else f"{v:g}"
                if isinstance(v, float)
                else str(v)
                for v in row
            ]
        )
    out.print(t)
