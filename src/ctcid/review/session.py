"""A review of one ``ctcid predict`` output: predictions indexed once, decisions in memory and in SQLite.

Opening a session reads ``predictions.parquet``, ``predict.json`` and the model's threshold, builds the
queues (:mod:`ctcid.review.queue`) and replays the decision log (:mod:`ctcid.review.store`). After that every
request touches only the cells it shows or decides: a decision is one SQLite insert plus a few array updates,
and the per-sample counts are kept up to date incrementally.

Consensus
    A cell's label is ``ctc`` or ``wbc`` when every reviewer with a decision in force says so. Different
    decisions (including ``unsure`` next to a class) make it a *disagreement*, listed for discussion; its
    reviewers settle it by changing their own decisions.
Reviewed counts (``reviewed_counts.csv``)
    Per sample: ``cells``; ``reviewed`` (cells with any decision) and ``remaining``; ``confirmed_ctc`` and
    ``confirmed_wbc`` (consensus labels); ``open`` (reviewed but not confirmed: unsure or disputed);
    ``predicted_ctc`` (calls at the model's threshold); ``expected_unconfirmed`` (sum of ``p_ctc`` over the
    cells not confirmed); ``ctc_estimate`` = confirmed CTCs + that expectation, with ``ctc_estimate_lo`` /
    ``ctc_estimate_hi``, the confirmed CTCs plus the exact 95% Poisson-binomial interval of the unconfirmed
    cells (:func:`ctcid.review.counts.poisson_binomial_interval`). The interval assumes calibrated, independent
    probabilities; once every cell is confirmed it closes on the confirmed count.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CtcidError, arg
from ..io import CellDataset, atomic_write_text
from ..io.store import is_dataset
from ..predict.run import REVIEW_FILE
from ..report.display import DisplayWindows, fixed_window, panel_png
from .counts import poisson_binomial_interval
from .queue import QUEUES, next_cells, queue_orders
from .store import DECISIONS, DecisionStore

__all__ = [
    "COUNT_COLUMNS",
    "LABEL_COLUMNS",
    "ReviewRequestError",
    "ReviewSession",
    "default_reviewer",
    "export_labels",
]

DB_FILE = REVIEW_FILE
COUNTS_FILE = "reviewed_counts.csv"
LABEL_COLUMNS = ["cell_id", "sample_id", "label", "reviewer", "decided_at"]
COUNT_COLUMNS = [
    "sample_id",
    "cells",
    "reviewed",
    "remaining",
    "confirmed_ctc",
    "confirmed_wbc",
    "open",
    "predicted_ctc",
    "expected_unconfirmed",
    "ctc_estimate",
    "ctc_estimate_lo",
    "ctc_estimate_hi",
]
_CODE = {"wbc": 0, "ctc": 1, "unsure": 2}
_NAMES = np.array(["wbc", "ctc", "unsure"])
_REVIEWER = re.compile(r"^[\w.@+ -]{1,64}$")
# consensus status of a cell: nothing yet, confirmed wbc, confirmed ctc, reviewed but open
_NONE, _WBC, _CTC, _OPEN = 0, 1, 2, 3


def default_reviewer() -> str:
    """The login name (characters a reviewer name may not hold replaced by ``_``), else ``reviewer``."""
    import getpass

    try:
        name = re.sub(r"[^\w.@+ -]", "_", getpass.getuser())[:64]
    except (OSError, KeyError, ImportError):
        return "reviewer"
    return name or "reviewer"


class ReviewRequestError(CtcidError):
    """A request the session cannot honour: unknown cell, decision, sample, queue or reviewer name.

    ``status`` is the HTTP status the web app answers with (404 for something that does not exist).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _read_predict_json(folder: Path) -> dict[str, Any]:
    path = folder / "predict.json"
    if not path.is_file():
        raise CtcidError("not a `ctcid predict` output: predict.json is missing", folder)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CtcidError(f"predict.json cannot be read ({exc})", path) from None
    if not isinstance(info, dict):
        raise CtcidError("predict.json is not a JSON object", path)
    return info


def _read_predictions(folder: Path) -> pd.DataFrame:
    path = folder / "predictions.parquet"
    if not path.is_file():
        raise CtcidError("predictions.parquet is missing (is the predict output complete?)", folder)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise CtcidError(f"predictions cannot be read ({type(exc).__name__}: {exc})", path) from None
    missing = [c for c in ("cell_id", "sample_id", "p_ctc") if c not in frame]
    if missing:
        raise CtcidError(f"predictions lack column(s) {', '.join(missing)}", path)
    frame = frame.reset_index(drop=True)
    frame["cell_id"] = frame["cell_id"].astype(str)
    frame["sample_id"] = frame["sample_id"].astype(str)
    frame["qc_flags"] = frame["qc_flags"].fillna("").astype(str) if "qc_flags" in frame else ""
    p = frame["p_ctc"].to_numpy(dtype=np.float64)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise CtcidError("p_ctc must be probabilities in [0, 1]", path)
    if frame.duplicated(["sample_id", "cell_id"]).any():
        raise CtcidError("predictions list a cell twice", path)
    return frame


def _threshold(info: dict[str, Any], folder: Path) -> float:
    """The bundle's decision threshold (``model.json``), else the one ``predict.json`` recorded."""
    model = info.get("model")
    meta = Path(model) / "model.json" if model else None
    if meta is not None and meta.is_file():  # read as JSON: opening a review needs no deep-learning import
        try:
            return float(json.loads(meta.read_text())["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CtcidError(f"the model's threshold cannot be read ({exc})", meta) from None
    if isinstance(info.get("threshold"), int | float):
        return float(info["threshold"])
    raise CtcidError("neither the model bundle nor predict.json gives the decision threshold", folder)


def _dataset_path(info: dict[str, Any], folder: Path) -> Path:
    if is_dataset(folder / "dataset"):
        return folder / "dataset"
    named = info.get("dataset")
    if named:
        path = Path(named) if Path(named).is_absolute() else folder / named
        if is_dataset(path):
            return path
    raise CtcidError(f"the dataset these predictions come from is missing ({named or 'dataset'})", folder)


class ReviewSession:
    """The review of one ``ctcid predict`` output folder.

    Parameters
    ----------
    folder
        The predict output (``predict.json``, ``predictions.parquet``, the dataset at ``dataset/`` or at the
        path ``predict.json`` names); ``review.sqlite`` and ``reviewed_counts.csv`` are written beside them.
    reviewer
        Default reviewer name (requests may name another); default :func:`default_reviewer`.
    images
        Open the dataset for cell images (not needed to export labels and counts).
    seed
        Seed of the random queue.
    cache
        Cell images kept rendered (least recently used are dropped).

    Examples
    --------
    >>> s = ReviewSession("predict-out", reviewer="ana")              # doctest: +SKIP
    >>> rows = s.page("mixed", limit=24)                               # doctest: +SKIP
    >>> s.decide(s.cell_id[rows[0]], "ctc")["sample"]["reviewed"]      # doctest: +SKIP
    1
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        reviewer: str | None = None,
        images: bool = True,
        seed: int = 0,
        cache: int = 2048,
    ):
        self.folder = Path(folder)
        self.reviewer = self.check_reviewer(reviewer or default_reviewer())
        info = _read_predict_json(self.folder)
        frame = _read_predictions(self.folder)
        self.info = info
        self.threshold = _threshold(info, self.folder)
        self.model_id = str(info.get("model_id") or (frame["model_id"].iloc[0] if "model_id" in frame else ""))
        self.n = len(frame)
        self.cell_id = frame["cell_id"].to_numpy(dtype=object)
        self.sample_id = frame["sample_id"].to_numpy(dtype=object)
        self.p = frame["p_ctc"].to_numpy(dtype=np.float64)
        self.qc_flags = frame["qc_flags"].to_numpy(dtype=object)
        called = (frame["call"] == "ctc").to_numpy() if "call" in frame else self.p >= self.threshold
        self.called = np.asarray(called, dtype=bool)
        self.samples, self.sample_code = np.unique(self.sample_id.astype(str), return_inverse=True)
        self.samples = [str(s) for s in self.samples]
        self._sample_index = {s: i for i, s in enumerate(self.samples)}
        by_sample = np.argsort(self.sample_code, kind="stable")
        bounds = np.searchsorted(self.sample_code[by_sample], np.arange(len(self.samples) + 1))
        self._sample_rows = [by_sample[a:b] for a, b in itertools.pairwise(bounds)]
        self.orders = queue_orders(self.p, self.threshold, self.called, seed=seed)
        self._flag_masks = self._index_flags(frame["qc_flags"])
        self._by_key = dict(zip(zip(self.sample_id, self.cell_id, strict=True), range(self.n), strict=True))
        unique = frame["cell_id"].is_unique
        self._by_cell = dict(zip(self.cell_id, range(self.n), strict=True)) if unique else None
        self._lock = threading.RLock()
        self._mine: dict[str, np.ndarray] = {}
        self._votes = np.zeros((self.n, 3), np.int32)
        self._status = np.zeros(self.n, np.int8)
        self._version = np.zeros(len(self.samples), np.int64)
        self._intervals: dict[int, tuple[int, tuple[float, int, int]]] = {}
        self.store = DecisionStore(
            self.folder / DB_FILE,
            {
                "model_id": self.model_id,
                "dataset_fingerprint": info.get("dataset_fingerprint", ""),
                "cells": self.n,
            },
        )
        self._replay(self.store.frame())
        self.dataset: CellDataset | None = None
        self.windows: DisplayWindows | None = None
        self.saliency: np.ndarray | None = None
        self._saliency_row = np.full(self.n, -1, np.int64)
        self.grid_scale = 1  # zoom of the grid's images: channels about 64 px wide
        if images:
            self._open_images()
        self._panel = functools.lru_cache(maxsize=cache)(self._render)

    # ------------------------------------------------------------------------------------------ set-up

    @staticmethod
    def check_reviewer(name: str) -> str:
        """A reviewer name: 1-64 letters, digits, spaces and ``. @ + - _``."""
        name = str(name).strip()
        if not _REVIEWER.match(name):
            raise ReviewRequestError(
                f"reviewer name {name[:70]!r} is not allowed: use 1-64 letters, digits, spaces or . @ + - _"
            )
        return name

    def _index_flags(self, flags: pd.Series) -> dict[str, np.ndarray]:
        flagged = (flags != "").to_numpy()
        masks = {"clean": ~flagged, "flagged": flagged}
        names = flags[flagged].str.split(";").explode()
        for name in sorted(set(names[names != ""])):
            pattern = f"(?:^|;){re.escape(str(name))}(?:;|$)"
            masks[str(name)] = flags.str.contains(pattern, regex=True).to_numpy(dtype=bool)
        return masks

    @property
    def flags(self) -> list[str]:
        """Values the QC-flag filter takes: ``clean``, ``flagged`` and each flag."""
        return list(self._flag_masks)

    def _open_images(self) -> None:
        ds = CellDataset.open(_dataset_path(self.info, self.folder))
        key = ds.table[["sample_id", "cell_id"]].astype(str)
        index = pd.Series(np.arange(len(key)), index=pd.MultiIndex.from_frame(key))
        wanted = pd.MultiIndex.from_arrays([self.sample_id.astype(str), self.cell_id.astype(str)])
        rows = index.reindex(wanted).to_numpy()
        if np.isnan(rows.astype(np.float64)).any():
            raise CtcidError("the predictions name cells that are not in the dataset", ds.path)
        self.dataset = ds
        self.dataset_row = rows.astype(np.int64)
        self.grid_scale = max(1, round(64 / max(ds.crop_size)))
        self.windows = fixed_window(ds.header.get("channel_stats", {}), ds.channels)
        self._load_saliency(ds)

    def _load_saliency(self, ds: CellDataset) -> None:
        """``saliency.npy`` ``[cells, H, W]`` in [0, 1]: in the folder (one map per prediction row), or an
        explain output's (``explain/saliency.npy`` with its ``cells.csv``) matched by sample and cell id."""
        for path in (self.folder / "saliency.npy", self.folder / "explain" / "saliency.npy"):
            if not path.is_file():
                continue
            try:
                maps = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CtcidError(f"saliency maps cannot be read ({exc})", path) from None
            if maps.ndim != 3 or tuple(maps.shape[1:]) != tuple(ds.crop_size):
                raise CtcidError(f"saliency maps must be [cells, {ds.crop_size[0]}, {ds.crop_size[1]}]", path)
            cells = path.parent / "cells.csv"
            if cells.is_file():
                table = pd.read_csv(cells, dtype=str, keep_default_na=False)
                if len(table) != len(maps) or not {"cell_id", "sample_id"} <= set(table):
                    raise CtcidError(f"{cells.name} does not list one cell per saliency map", path)
                pos = pd.Series(
                    np.arange(len(table)), index=pd.MultiIndex.from_frame(table[["sample_id", "cell_id"]])
                )
                wanted = pd.MultiIndex.from_arrays([self.sample_id.astype(str), self.cell_id.astype(str)])
                found = pos.reindex(wanted).to_numpy(dtype=np.float64)
                self._saliency_row = np.where(np.isnan(found), -1, found).astype(np.int64)
            elif len(maps) == self.n:
                self._saliency_row = np.arange(self.n, dtype=np.int64)
            else:
                raise CtcidError(f"{len(maps)} saliency maps for {self.n} predicted cells, and no cells.csv", path)
            self.saliency = maps
            return

    def has_saliency(self, row: int) -> bool:
        return self.saliency is not None and self._saliency_row[row] >= 0

    def _replay(self, log: pd.DataFrame) -> None:
        """The decisions in force, from the log (vectorised: a restart of a long review is quick)."""
        live = log[log["undone_at"].isna()]
        latest = live.drop_duplicates(["sample_id", "cell_id", "reviewer"], keep="last")
        keys = pd.MultiIndex.from_arrays([self.sample_id.astype(str), self.cell_id.astype(str)])
        pos = pd.Series(np.arange(self.n), index=keys)
        rows = pos.reindex(pd.MultiIndex.from_frame(latest[["sample_id", "cell_id"]])).to_numpy(np.float64)
        ok = ~np.isnan(rows)
        latest, rows = latest[ok], rows[ok].astype(np.int64)
        codes = latest["decision"].map(_CODE).to_numpy(np.int64)
        for reviewer in latest["reviewer"].unique():
            sel = (latest["reviewer"] == reviewer).to_numpy()
            mine = self._mine_of(str(reviewer))
            mine[rows[sel]] = codes[sel]
        np.add.at(self._votes, (rows, codes), 1)
        self._status = self._status_of(np.arange(self.n))

    def _status_of(self, rows: np.ndarray) -> np.ndarray:
        v = self._votes[rows]
        kinds = (v > 0).sum(axis=1)
        status = np.full(len(rows), _OPEN, np.int8)
        status[kinds == 0] = _NONE
        status[(kinds == 1) & (v[:, 0] > 0)] = _WBC
        status[(kinds == 1) & (v[:, 1] > 0)] = _CTC
        return status

    def _mine_of(self, reviewer: str) -> np.ndarray:
        if reviewer not in self._mine:
            self._mine[reviewer] = np.full(self.n, -1, np.int8)
        return self._mine[reviewer]

    # ------------------------------------------------------------------------------------------ lookups

    def row_of(self, cell_id: Any, sample_id: Any = None) -> int:
        """The row of a cell, by id (and sample when ids repeat between samples)."""
        if not isinstance(cell_id, str | int) or isinstance(cell_id, bool):
            raise ReviewRequestError("cell_id must be a string")
        cell = str(cell_id)
        if sample_id is not None:
            row = self._by_key.get((str(sample_id), cell))
        elif self._by_cell is not None:
            row = self._by_cell.get(cell)
        else:
            raise ReviewRequestError(f"cell ids repeat between samples; give the sample_id of {cell[:80]!r}")
        if row is None:
            where = f" in sample {str(sample_id)[:80]!r}" if sample_id is not None else ""
            raise ReviewRequestError(f"no cell {cell[:80]!r}{where} in these predictions", status=404)
        return int(row)

    def sample_index(self, sample: str) -> int:
        if sample not in self._sample_index:
            raise ReviewRequestError(f"no sample {str(sample)[:80]!r} in these predictions", status=404)
        return self._sample_index[sample]

    def cell(self, row: int, reviewer: str | None = None) -> dict[str, Any]:
        """What the page shows of one cell."""
        mine = self._mine.get(reviewer or self.reviewer)
        code = -1 if mine is None else int(mine[row])
        return {
            "row": int(row),
            "cell_id": str(self.cell_id[row]),
            "sample_id": str(self.sample_id[row]),
            "p_ctc": round(float(self.p[row]), 4),
            "call": "ctc" if self.called[row] else "wbc",
            "qc_flags": str(self.qc_flags[row]),
            "decision": str(_NAMES[code]) if code >= 0 else None,
            "saliency": self.has_saliency(row),
        }

    # ------------------------------------------------------------------------------------------ queue

    def page(
        self,
        queue: str = "mixed",
        *,
        sample: str | None = None,
        flag: str | None = None,
        reviewer: str | None = None,
        limit: int = 48,
        skip: int = 0,
    ) -> np.ndarray:
        """Rows of the next ``limit`` cells of ``queue`` the reviewer has not decided, after ``skip``."""
        if queue not in QUEUES:
            raise ReviewRequestError(f"unknown queue {str(queue)[:40]!r}: use one of {', '.join(QUEUES)}")
        if flag and flag not in self._flag_masks:
            raise ReviewRequestError(f"unknown QC flag {str(flag)[:80]!r}: use one of {', '.join(self.flags)}")
        if not 1 <= int(limit) <= 500 or int(skip) < 0:
            raise ReviewRequestError("limit must be 1-500 and skip at least 0")
        code = self.sample_index(sample) if sample else None
        with self._lock:
            mine = self._mine.get(reviewer or self.reviewer)
            eligible = np.ones(self.n, bool) if mine is None else mine < 0
            if code is not None:
                eligible &= self.sample_code == code
            if flag:
                eligible &= self._flag_masks[flag]
            return next_cells(self.orders[queue], eligible, int(limit), int(skip))

    # ------------------------------------------------------------------------------------------ decisions

    def _set(self, row: int, reviewer: str, code: int) -> None:
        """Make ``code`` (-1: none) the reviewer's decision on ``row`` and update the counts."""
        mine = self._mine_of(reviewer)
        old = int(mine[row])
        if old >= 0:
            self._votes[row, old] -= 1
        if code >= 0:
            self._votes[row, code] += 1
        mine[row] = code
        self._status[row] = self._status_of(np.array([row]))[0]
        self._version[self.sample_code[row]] += 1

    def decide(
        self, cell_id: Any, decision: Any, *, reviewer: str | None = None, sample_id: Any = None
    ) -> dict[str, Any]:
        """Record a decision (``ctc``, ``wbc`` or ``unsure``): written to SQLite before this returns.

        Returns the stored row with the cell's sample counts (``sample``) and the reviewer's progress.
        """
        if decision not in DECISIONS:
            raise ReviewRequestError(f"unknown decision {str(decision)[:40]!r}: use ctc, wbc or unsure")
        who = self.check_reviewer(reviewer) if reviewer is not None else self.reviewer
        row = self.row_of(cell_id, sample_id)
        with self._lock:
            rec = self.store.add(
                self.cell_id[row], self.sample_id[row], decision, who, self.model_id, float(self.p[row])
            )
            self._set(row, who, _CODE[decision])
            return {**rec, "row": row, **self._summary(row, who)}

    def undo(self, reviewer: str | None = None) -> dict[str, Any] | None:
        """Withdraw the reviewer's latest decision in force (their earlier one on that cell, if any, returns)."""
        who = self.check_reviewer(reviewer) if reviewer is not None else self.reviewer
        with self._lock:
            rec = self.store.undo(who)
            if rec is None:
                return None
            row = self._by_key.get((rec["sample_id"], rec["cell_id"]))
            if row is None:  # a decision on a cell these predictions do not hold
                return {**rec, "row": None, "restored": None}
            before = self.store.current(rec["cell_id"], rec["sample_id"], who)
            self._set(row, who, _CODE[before] if before else -1)
            return {**rec, "row": row, "restored": before, **self._summary(row, who)}

    def _summary(self, row: int, reviewer: str) -> dict[str, Any]:
        mine = self._mine_of(reviewer)
        return {
            "sample": self.counts_row(int(self.sample_code[row])),
            "mine": int((mine >= 0).sum()),
            "cells": self.n,
        }

    # ------------------------------------------------------------------------------------------ counts

    def counts_row(self, s: int) -> dict[str, Any]:
        """The reviewed counts of sample number ``s`` (see the module doc)."""
        with self._lock:
            rows = self._sample_rows[s]
            status = self._status[rows]
            v = self._votes[rows]
            unconfirmed = (status != _WBC) & (status != _CTC)
            cached = self._intervals.get(s)
            if cached is None or cached[0] != self._version[s]:
                cached = (int(self._version[s]), poisson_binomial_interval(self.p[rows][unconfirmed]))
                self._intervals[s] = cached
            mean, lo, hi = cached[1]
            ctc = int((status == _CTC).sum())
            reviewed = int((v.sum(axis=1) > 0).sum())
            return {
                "sample_id": self.samples[s],
                "cells": len(rows),
                "reviewed": reviewed,
                "remaining": len(rows) - reviewed,
                "confirmed_ctc": ctc,
                "confirmed_wbc": int((status == _WBC).sum()),
                "open": int((status == _OPEN).sum()),
                "predicted_ctc": int(self.called[rows].sum()),
                "expected_unconfirmed": round(mean, 3),
                "ctc_estimate": round(ctc + mean, 3),
                "ctc_estimate_lo": ctc + lo,
                "ctc_estimate_hi": ctc + hi,
            }

    def counts(self) -> pd.DataFrame:
        """Reviewed counts of every sample (``reviewed_counts.csv``)."""
        return pd.DataFrame([self.counts_row(s) for s in range(len(self.samples))], columns=COUNT_COLUMNS)

    def progress(self, reviewer: str | None = None) -> dict[str, int]:
        mine = self._mine.get(reviewer or self.reviewer)
        with self._lock:
            reviewed = int((self._votes.sum(axis=1) > 0).sum())
            return {
                "cells": self.n,
                "reviewed": reviewed,
                "remaining": self.n - reviewed,
                "mine": 0 if mine is None else int((mine >= 0).sum()),
            }

    def _in_force(self) -> pd.DataFrame:
        log = self.store.frame()
        live = log[log["undone_at"].isna()]
        return live.drop_duplicates(["sample_id", "cell_id", "reviewer"], keep="last")

    def labels(self) -> pd.DataFrame:
        """Consensus labels (``cell_id``, ``sample_id``, ``label``, ``reviewer``, ``decided_at``), in the form
        ``ctcid ingest --labels`` and ``ctcid train --labels`` read. Unsure and disputed cells are left out."""
        cur = self._in_force()
        if cur.empty:
            return pd.DataFrame(columns=LABEL_COLUMNS)
        cur = cur.sort_values("reviewer", kind="stable")
        g = cur.groupby(["sample_id", "cell_id"], sort=True)
        agg = g.agg(
            kinds=("decision", "nunique"), label=("decision", "first"), decided_at=("decided_at", "max")
        ).reset_index()
        if cur["reviewer"].nunique() == 1:
            agg["reviewer"] = cur["reviewer"].iloc[0]
        else:
            agg["reviewer"] = g["reviewer"].agg(";".join).to_numpy()
        agg = agg[(agg["kinds"] == 1) & agg["label"].isin(["ctc", "wbc"])]
        return agg[LABEL_COLUMNS].reset_index(drop=True)

    def disagreements(self) -> pd.DataFrame:
        """Cells whose reviewers' decisions in force differ, with who said what."""
        cols = ["sample_id", "cell_id", "p_ctc", "decisions", "reviewers"]
        with self._lock:
            disputed = int(((self._votes > 0).sum(axis=1) > 1).sum())
        if disputed == 0:  # known from memory: the log is read only when there is something to list
            return pd.DataFrame(columns=cols)
        cur = self._in_force()
        kinds = cur.groupby(["sample_id", "cell_id"])["decision"].transform("nunique")
        split = cur[kinds > 1].sort_values(["sample_id", "cell_id", "reviewer"])
        if split.empty:
            return pd.DataFrame(columns=cols)
        out = (
            split.assign(said=split["reviewer"] + ": " + split["decision"])
            .groupby(["sample_id", "cell_id"], sort=True)
            .agg(p_ctc=("p_ctc", "first"), decisions=("said", "; ".join), reviewers=("reviewer", "nunique"))
            .reset_index()
        )
        return out[cols]

    def write_counts(self) -> Path:
        """Write ``reviewed_counts.csv`` beside the predictions (atomically)."""
        return atomic_write_text(self.folder / COUNTS_FILE, self.counts().to_csv(index=False))

    # ------------------------------------------------------------------------------------------ images

    def panel(self, row: int, *, saliency: bool = False, scale: int = 2) -> bytes:
        """PNG of cell ``row`` (every channel through the fixed windows; the saliency when asked and present)."""
        if self.dataset is None:
            raise ReviewRequestError("this session was opened without images", status=404)
        if not 0 <= row < self.n:
            raise ReviewRequestError(f"no cell at row {row}", status=404)
        if scale not in (1, 2, 3, 4, 6, 8):
            raise ReviewRequestError("scale must be 1, 2, 3, 4, 6 or 8")
        return self._panel(int(row), bool(saliency and self.has_saliency(row)), int(scale))

    def _render(self, row: int, saliency: bool, scale: int) -> bytes:
        assert self.dataset is not None and self.windows is not None
        pixels = self.dataset.images([int(self.dataset_row[row])])[0]
        sal = None
        if saliency and self.saliency is not None:
            sal = np.asarray(self.saliency[int(self._saliency_row[row])], dtype=np.float32)
        return panel_png(pixels, self.windows, sal, scale=scale)

    def warm(self, rows: np.ndarray, scale: int | None = None) -> None:
        """Render the grid panels of ``rows`` into the cache (e.g. the first page, before the browser asks)."""
        for r in np.asarray(rows, np.int64):
            self._panel(int(r), False, scale or self.grid_scale)

    def close(self) -> None:
        self.store.close()


def export_labels(
    folder: str | os.PathLike[str], out_csv: str | os.PathLike[str], *, overwrite: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the review's consensus labels to ``out_csv`` and refresh ``reviewed_counts.csv``.

    Returns the labels and the counts. The CSV has the header only when nothing is confirmed yet.
    """
    out = Path(out_csv)
    if out.exists() and not overwrite:
        raise CtcidError(f"already exists; choose another file or pass {arg('overwrite')}", out)
    session = ReviewSession(folder, images=False)
    try:
        labels = session.labels()
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, labels.to_csv(index=False))
        session.write_counts()
        return labels, session.counts()
    finally:
        session.close()
