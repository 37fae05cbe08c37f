"""The review decisions: an append-only SQLite log beside the predictions (``review.sqlite``).

Every decision is one row, committed before the request is answered (WAL journal, ``synchronous=FULL``), with
the reviewer, the time (UTC, ISO 8601), the model id and the model's probability for the cell. Nothing is ever
deleted: an undo stamps ``undone_at`` on the reviewer's latest decision still in force, and a reviewer who
changes their mind adds a new row. A reviewer's current decision on a cell is their latest row not undone, so
killing the server loses nothing and a restart resumes from the log.

The file records which predictions it belongs to (model id, dataset fingerprint, number of cells); opening it
next to other predictions is refused rather than mixing decisions of two runs.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CtcidError

__all__ = ["DECISIONS", "DecisionStore", "utc_now"]

#: What a reviewer can say about a cell.
DECISIONS = ("ctc", "wbc", "unsure")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cell_id TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('ctc', 'wbc', 'unsure')),
    reviewer TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    model_id TEXT NOT NULL,
    p_ctc REAL NOT NULL,
    undone_at TEXT
);
CREATE INDEX IF NOT EXISTS decisions_in_force ON decisions (reviewer, undone_at, id);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = ("id", "cell_id", "sample_id", "decision", "reviewer", "decided_at", "model_id", "p_ctc", "undone_at")


def utc_now() -> str:
    """The current time as UTC ISO 8601 with milliseconds, e.g. ``2026-12-03T10:15:02.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DecisionStore:
    """The decision log of one predictions folder.

    Parameters
    ----------
    path
        The SQLite file (created when missing).
    identity
        What the predictions are (e.g. model id, dataset fingerprint, cells); stored on creation and compared on
        every later opening.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> db = DecisionStore(pathlib.Path(tempfile.mkdtemp()) / "review.sqlite", {"model_id": "m1"})
    >>> db.add("c1", "P1", "ctc", "ana", "m1", 0.9)["decision"]
    'ctc'
    >>> db.undo("ana")["cell_id"], db.undo("ana")
    ('c1', None)
    >>> len(db.frame()), db.frame()["undone_at"].notna().all()
    (1, np.True_)
    """

    def __init__(self, path: str | os.PathLike[str], identity: dict[str, Any]):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise CtcidError(f"review database of schema {version}; this ctcid reads {SCHEMA_VERSION}", path)
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            stored = dict(self._db.execute("SELECT key, value FROM info").fetchall())
        except sqlite3.DatabaseError as exc:
            raise CtcidError(
                f"cannot open the review database ({exc}); is it a ctcid review.sqlite?", path
            ) from None
        if str(mode).lower() != "wal":
            raise CtcidError(f"the review database cannot use a write-ahead log (journal mode {mode})", path)
        wanted = {k: str(v) for k, v in identity.items()}
        if not stored:
            with self._db:
                self._db.executemany("INSERT INTO info VALUES (?, ?)", sorted(wanted.items()))
        else:
            diff = [k for k in wanted if k in stored and stored[k] != wanted[k]]
            if diff:
                k = diff[0]
                raise CtcidError(
                    f"this review database belongs to other predictions ({k} {stored[k]!r}, these have "
                    f"{wanted[k]!r}); move it away to start a new review",
                    path,
                )

    def add(
        self, cell_id: str, sample_id: str, decision: str, reviewer: str, model_id: str, p_ctc: float
    ) -> dict[str, Any]:
        """Record one decision (committed on return); returns the stored row."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        row = (str(cell_id), str(sample_id), decision, str(reviewer), utc_now(), str(model_id), float(p_ctc))
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO decisions (cell_id, sample_id, decision, reviewer, decided_at, model_id, p_ctc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return dict(zip(_COLUMNS, (cur.lastrowid, *row, None), strict=True))

    def undo(self, reviewer: str) -> dict[str, Any] | None:
        """Withdraw the reviewer's latest decision still in force; ``None`` when there is none."""
        with self._lock, self._db:
            got = self._db.execute(
                "UPDATE decisions SET undone_at = ? WHERE id = (SELECT id FROM decisions WHERE reviewer = ? "
                f"AND undone_at IS NULL ORDER BY id DESC LIMIT 1) RETURNING {', '.join(_COLUMNS)}",
                (utc_now(), str(reviewer)),
            ).fetchall()  # read to the end, so that the statement completes and commits
        return dict(zip(_COLUMNS, got[0], strict=True)) if got else None

    def current(self, cell_id: str, sample_id: str, reviewer: str) -> str | None:
        """The reviewer's decision in force on a cell (``None`` when there is none)."""
        with self._lock:
            got = self._db.execute(
                "SELECT decision FROM decisions WHERE reviewer = ? AND sample_id = ? AND cell_id = ? "
                "AND undone_at IS NULL ORDER BY id DESC LIMIT 1",
                (str(reviewer), str(sample_id), str(cell_id)),
            ).fetchall()
        return str(got[0][0]) if got else None

    def frame(self) -> pd.DataFrame:
        """Every row of the log, oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM decisions ORDER BY id").fetchall()
        return pd.DataFrame(rows, columns=list(_COLUMNS))

    def close(self) -> None:
        with self._lock:
            self._db.close()
