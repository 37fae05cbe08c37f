"""Patient-grouped splits: cross-validation folds, a train/validation split, and leakage checks.

Every cell belongs to a patient (``sample_id``). Cells of one patient are strongly correlated
(same blood draw, same run, same staining), so a patient is never on two sides of a split: all
functions here build splits over patients and check the result with :func:`check_no_leakage`.
Folds are stratified on the cell labels so that every fold sees a similar share of CTCs.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import CtcidError, arg
from ..io._atomic import atomic_write_text
from ._checks import as_labels, as_sample_ids, check_lengths

__all__ = [
    "FOLD_TABLE_COLUMNS",
    "NO_PATIENTS_HINT",
    "PATIENTS_UNKNOWN",
    "ROLES",
    "Split",
    "check_no_leakage",
    "fold_table",
    "patient_folds",
    "read_fold_table",
    "split_groups",
    "splits_from_table",
    "train_val_split",
    "write_fold_table",
]

#: The three sides of a split, in the order they appear in tables.
ROLES = ("train", "val", "test")
#: Columns of the table written as ``folds.csv``.
FOLD_TABLE_COLUMNS = ("fold", "sample_id", "role", "cells", "ctc")
#: What to do when the cells' patients are not known, said whenever too few patients stop a split (the
#: arguments are filled in by :func:`ctcid.errors.arg`, worded for Python or the command line).
NO_PATIENTS_HINT = (
    "if the cells come from several patients, give each cell its patient (re-ingest with {sample_regex} to read "
    "it from file names, or a manifest with a sample_id column); if the patients are truly unknown, pass "
    "{samples_unknown} (each cell its own group; metrics may be optimistic)"
)
#: The mark of every output made with ``samples_unknown``.
PATIENTS_UNKNOWN = "patients unknown: metrics may be optimistic"


def split_groups(
    sample_ids: object, cell_ids: object | None = None, *, samples_unknown: bool = False
) -> np.ndarray:
    """The groups a split keeps on one side: the patients, or with ``samples_unknown`` each cell on its own
    (``sample/cell``), for data without patient ids. Splitting cells of one patient makes the held-out cells
    resemble the training ones, so metrics may be optimistic; outputs made so carry :data:`PATIENTS_UNKNOWN`.

    >>> split_groups(["A", "A"], ["c1", "c2"], samples_unknown=True).tolist()
    ['A/c1', 'A/c2']
    """
    ids = as_sample_ids(sample_ids)
    if not samples_unknown:
        return ids
    if cell_ids is None:
        raise ValueError("samples_unknown needs the cell ids")
    cells = as_sample_ids(cell_ids)
    check_lengths(sample_ids=ids, cell_ids=cells)
    return np.char.add(np.char.add(ids, "/"), cells)


def _index_array(values: object) -> np.ndarray:
    arr = np.array(values, dtype=np.int64, copy=True).reshape(-1)
    arr.sort()
    if arr.size > 1 and (np.diff(arr) == 0).any():
        raise ValueError("a split holds the same cell index twice")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Split:
    """One split of the cells into training, validation and test sets.

    Attributes
    ----------
    fold
        Fold number (0 for a plain train/validation split).
    train, val, test
        Sorted, read-only int64 cell indices; ``test`` is empty for a plain train/validation split.

    Examples
    --------
    >>> s = Split(0, train=[3, 1], val=[2], test=[])
    >>> s.train.tolist(), s.test.size
    ([1, 3], 0)
    """

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "fold", int(self.fold))
        for role in ROLES:
            object.__setattr__(self, role, _index_array(getattr(self, role)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return self.fold == other.fold and all(np.array_equal(getattr(self, r), getattr(other, r)) for r in ROLES)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Split(fold={self.fold}, train={self.train.size} cells, val={self.val.size}, test={self.test.size})"
        )

    def role_of(self, n_cells: int) -> np.ndarray:
        """Role of each of ``n_cells`` cells as strings (``train``/``val``/``test``, empty when unused)."""
        out = np.full(n_cells, "", dtype=object)
        for role in ROLES:
            out[getattr(self, role)] = role
        return out


def _name_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_no_leakage(sample_ids: object, split: Split) -> None:
    """Refuse a split in which a patient appears in more than one of train/val/test.

    Parameters
    ----------
    sample_ids
        Patient of each cell (array-like of length ``n_cells``).
    split
        The split to check; its indices refer to positions in ``sample_ids``.

    Raises
    ------
    CtcidError
        Naming up to five leaking patients and how many there are. There is deliberately no
        option to allow leakage.

    Examples
    --------
    >>> check_no_leakage(["A", "A", "B"], Split(0, train=[0], val=[1], test=[2]))
    Traceback (most recent call last):
    ...
    ctcid.errors.CtcidError: fold 0: 1 patient(s) appear in more than one of train/val/test: A (train+val); ...
    """
    ids = as_sample_ids(sample_ids)
    n = ids.size
    sets: dict[str, set[str]] = {}
    for role in ROLES:
        idx = getattr(split, role)
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise CtcidError(
                f"fold {split.fold}: {role} refers to cell index {int(idx[0] if idx[0] < 0 else idx[-1])} "
                f"but there are only {n} cells; the split belongs to another dataset"
            )
        sets[role] = set(np.unique(ids[idx]).tolist())
    leaking: dict[str, list[str]] = {}
    for role in ROLES:
        for pid in sets[role]:
            leaking.setdefault(pid, []).append(role)
    bad = sorted(pid for pid, roles in leaking.items() if len(roles) > 1)
    if bad:
        names = [f"{pid} ({'+'.join(leaking[pid])})" for pid in bad]
        raise CtcidError(
            f"fold {split.fold}: {len(bad)} patient(s) appear in more than one of train/val/test: "
            f"{_name_list(names)}; splits must be by patient"
        )


def _stratified_group_splits(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``StratifiedGroupKFold`` (shuffled) over positions of ``y``; returns (train, test) position pairs."""
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # The class-size warning counts cells; the CTC checks below are per patient and more useful.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            return [(tr, te) for tr, te in sgkf.split(np.zeros((y.size, 1)), y, groups)]
        except ValueError as exc:  # pragma: no cover - guarded by the patient counts checked by callers
            raise CtcidError(f"cannot build patient-grouped splits: {exc}") from None


def _has_ctc(y: np.ndarray, pos: np.ndarray) -> bool:
    return bool((y[pos] == 1).any())


def _inner_val(
    y: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Grouped, stratified validation draw inside ``groups``: (train, val) positions, or None without CTCs.

    The inner splitter has ``round(1 / val_fraction)`` groups (at least 2, at most one per patient); the first
    of its splits whose training and validation parts both hold a CTC is used.
    """
    n_groups = np.unique(groups).size
    n_inner = min(max(2, round(1.0 / val_fraction)), n_groups)
    for tr, va in _stratified_group_splits(y, groups, n_inner, seed):
        if tr.size and va.size and _has_ctc(y, tr) and _has_ctc(y, va):
            return tr, va
    return None


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 < float(val_fraction) < 1.0:
        raise CtcidError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def _ctc_patients(ids: np.ndarray, y: np.ndarray) -> int:
    return np.unique(ids[y == 1]).size


def patient_folds(
    sample_ids: object,
    labels: object,
    *,
    n_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> list[Split]:
    """Stratified, patient-grouped K-fold cross-validation with a validation set inside each fold.

    Fold ``k``'s test set is one group of patients from ``StratifiedGroupKFold(n_folds, shuffle=True,
    random_state=seed)``. From the remaining patients about ``val_fraction`` of them form the validation set,
    drawn the same way (grouped and stratified, ``round(1 / val_fraction)`` inner groups; the first inner split
    whose training and validation parts both contain a CTC). The rest are the training set.

    Parameters
    ----------
    sample_ids
        Patient of each cell.
    labels
        Class of each cell: 1 CTC, 0 WBC, -1 unlabelled (or ``ctc``/``wbc``/empty). Unlabelled cells are left
        out of every set.
    n_folds
        Number of folds (at least 2).
    seed
        Random seed of the patient shuffling; the same seed gives the same folds.
    val_fraction
        Approximate fraction of the non-test patients used for validation.

    Returns
    -------
    list of Split
        One per fold, in fold order; each passes :func:`check_no_leakage`.

    Raises
    ------
    CtcidError
        ``n_folds < 2``; fewer labelled patients than ``n_folds + 2``; a fold whose training or validation set
        would hold no CTC.

    Examples
    --------
    >>> ids = [f"P{i}" for i in range(8) for _ in range(4)]
    >>> y = [1, 0, 0, 0] * 8
    >>> folds = patient_folds(ids, y, n_folds=2, seed=0)
    >>> len(folds), sum(f.test.size for f in folds)
    (2, 32)
    """
    ids = as_sample_ids(sample_ids)
    y = as_labels(labels)
    check_lengths(sample_ids=ids, labels=y)
    if int(n_folds) != n_folds or n_folds < 2:
        raise CtcidError(f"n_folds must be an integer of at least 2, got {n_folds}")
    n_folds = int(n_folds)
    _check_fraction(val_fraction)

    cells, ids_l, y_l, n_pat = _labelled_cells(
        ids,
        y,
        4,
        "patient-grouped cross-validation needs at least 4 (2 folds, each with test, validation and training "
        "patients), whatever the number of folds",
    )
    if n_pat < n_folds + 2:
        raise CtcidError(
            f"{n_pat} labelled patient(s) are too few for {n_folds} folds: each fold needs its test patients plus "
            f"at least one validation and one training patient (at least {n_folds + 2}); use "
            f"{arg('n_folds', n_pat - 2, flag='--folds')} "
            "or fewer"
        )
    if _ctc_patients(ids_l, y_l) < 2:
        raise CtcidError(
            f"CTCs are labelled in only {_ctc_patients(ids_l, y_l)} patient(s); patient-grouped training and "
            "validation need CTCs in at least 2 patients"
        )

    splits = []
    for k, (rest, test) in enumerate(_stratified_group_splits(y_l, ids_l, n_folds, seed)):
        n_rest = np.unique(ids_l[rest]).size
        if n_rest < 2:
            raise CtcidError(
                f"fold {k}: only {n_rest} patient(s) are left outside the test set, too few for training and "
                f"validation; use fewer folds than {n_folds}"
            )
        inner = _inner_val(y_l[rest], ids_l[rest], val_fraction, seed)
        if inner is None:
            n_ctc_pat = _ctc_patients(ids_l[rest], y_l[rest])
            side = "validation" if n_ctc_pat < 2 else "validation or training"
            raise CtcidError(
                f"fold {k}: the {side} set would hold no CTC (only {n_ctc_pat} of the {n_rest} non-test patients "
                f"have CTCs); use fewer folds than {n_folds}"
            )
        tr, va = inner
        split = Split(k, train=cells[rest[tr]], val=cells[rest[va]], test=cells[test])
        check_no_leakage(ids, split)
        splits.append(split)
    return splits


def _labelled_cells(
    ids: np.ndarray, y: np.ndarray, least: int, needs: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The labelled cells, their patients and labels, and the number of labelled patients; fewer than ``least``
    patients are refused, ``needs`` saying why."""
    cells = np.flatnonzero(y >= 0)
    ids_l, y_l = ids[cells], y[cells]
    n_pat = np.unique(ids_l).size
    if n_pat < least:
        hint = NO_PATIENTS_HINT.format(
            sample_regex=arg("sample_regex", ...), samples_unknown=arg("samples_unknown")
        )
        raise CtcidError(f"{n_pat} labelled patient(s): {needs}; {hint}")
    return cells, ids_l, y_l, n_pat


def train_val_split(sample_ids: object, labels: object, *, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """A patient-grouped, stratified training/validation split (fold 0, empty test set).

    About ``val_fraction`` of the labelled patients go to validation (``StratifiedGroupKFold`` with
    ``round(1 / val_fraction)`` groups; the first split whose two sides both contain a CTC). Unlabelled cells
    are left out.

    Raises
    ------
    CtcidError
        Fewer than 2 labelled patients, or no way to give both sides a CTC.

    Examples
    --------
    >>> s = train_val_split(["A", "A", "B", "B", "C", "C"], [1, 0, 1, 0, 1, 0], val_fraction=0.34)
    >>> s.fold, s.test.size, s.train.size + s.val.size
    (0, 0, 6)
    """
    ids = as_sample_ids(sample_ids)
    y = as_labels(labels)
    check_lengths(sample_ids=ids, labels=y)
    _check_fraction(val_fraction)
    cells, ids_l, y_l, n_pat = _labelled_cells(
        ids, y, 2, "a patient-grouped training/validation split needs at least 2"
    )
    inner = _inner_val(y_l, ids_l, val_fraction, seed)
    if inner is None:
        raise CtcidError(
            f"cannot give both training and validation a CTC: CTCs are labelled in "
            f"{_ctc_patients(ids_l, y_l)} of {n_pat} patient(s), at least 2 are needed"
        )
    tr, va = inner
    split = Split(0, train=cells[tr], val=cells[va])
    check_no_leakage(ids, split)
    return split


def fold_table(sample_ids: object, splits: list[Split], *, labels: object | None = None) -> pd.DataFrame:
    """The patient-to-role assignment of every fold, as saved with each run (``folds.csv``).

    Parameters
    ----------
    sample_ids
        Patient of each cell.
    splits
        Splits whose indices refer to ``sample_ids``.
    labels
        Optional labels (as for :func:`patient_folds`) to fill the ``ctc`` column; without them it is missing.

    Returns
    -------
    pandas.DataFrame
        One row per (fold, sample_id) with columns ``fold``, ``sample_id``, ``role`` (``train``/``val``/
        ``test``), ``cells`` (cells of that patient in that role) and ``ctc`` (how many of them are CTCs),
        sorted by fold, role and sample_id.

    Examples
    --------
    >>> fold_table(["A", "A", "B"], [Split(0, train=[0, 1], val=[2])], labels=[1, 0, 0])
       fold sample_id   role  cells  ctc
    0     0         A  train      2    1
    1     0         B    val      1    0
    """
    ids = as_sample_ids(sample_ids)
    y = None if labels is None else as_labels(labels)
    if y is not None:
        check_lengths(sample_ids=ids, labels=y)
    frames = []
    for split in splits:
        check_no_leakage(ids, split)
        for role in ROLES:
            idx = getattr(split, role)
            if not idx.size:
                continue
            part = pd.DataFrame({"sample_id": ids[idx], "ctc": (y[idx] == 1) if y is not None else False})
            g = part.groupby("sample_id", sort=True)
            frames.append(
                pd.DataFrame(
                    {
                        "fold": split.fold,
                        "sample_id": g.size().index.astype(str),
                        "role": role,
                        "cells": g.size().to_numpy(np.int64),
                        "ctc": g["ctc"].sum().to_numpy(np.int64),
                    }
                )
            )
    if not frames:
        out = pd.DataFrame({c: pd.Series(dtype="int64") for c in FOLD_TABLE_COLUMNS})
        out["sample_id"] = out["sample_id"].astype(object)
        out["role"] = out["role"].astype(object)
        return out
    out = pd.concat(frames, ignore_index=True)
    if y is None:
        out["ctc"] = pd.array([pd.NA] * len(out), dtype="Int64")
    return out[list(FOLD_TABLE_COLUMNS)].reset_index(drop=True)


def splits_from_table(table: pd.DataFrame, sample_ids: object, *, labels: object | None = None) -> list[Split]:
    """Rebuild splits from a table made by :func:`fold_table` (for example a saved ``folds.csv``).

    Every cell of a listed patient goes to that patient's role in each fold, except unlabelled cells when
    ``labels`` is given (as :func:`patient_folds` does). When the table has a ``cells`` column, the rebuilt
    counts must match it: a mismatch means the table belongs to another version of the dataset.

    Raises
    ------
    CtcidError
        Missing columns, unknown roles, a patient listed twice in one fold, patients absent from the dataset,
        cell counts that do not match, or leakage.

    Examples
    --------
    >>> t = pd.DataFrame({"fold": [0, 0], "sample_id": ["A", "B"], "role": ["train", "val"]})
    >>> splits_from_table(t, ["A", "B", "A"])
    [Split(fold=0, train=2 cells, val=1, test=0)]
    """
    missing = [c for c in ("fold", "sample_id", "role") if c not in table.columns]
    if missing:
        raise CtcidError(f"the fold table lacks column(s) {', '.join(missing)}; expected {FOLD_TABLE_COLUMNS}")
    ids = as_sample_ids(sample_ids)
    use = np.ones(ids.size, dtype=bool)
    if labels is not None:
        y = as_labels(labels)
        check_lengths(sample_ids=ids, labels=y)
        use = y >= 0
    t = table.copy()
    t["sample_id"] = as_sample_ids(t["sample_id"])
    bad_roles = sorted(set(t["role"].astype(str)) - set(ROLES))
    if bad_roles:
        raise CtcidError(f"the fold table has unknown role(s) {', '.join(bad_roles)}; expected train, val or test")
    dup = t.duplicated(["fold", "sample_id"])
    if dup.any():
        names = [f"{r.sample_id} (fold {r.fold})" for r in t[dup].itertuples()]
        raise CtcidError(f"the fold table lists patient(s) twice in one fold: {_name_list(names)}")
    known = set(np.unique(ids).tolist())
    unknown = sorted(set(t["sample_id"]) - known)
    if unknown:
        raise CtcidError(
            f"{len(unknown)} patient(s) in the fold table are not in the dataset: {_name_list(unknown)}; "
            "read folds.csv with read_fold_table (sample_id as text) and check it belongs to this dataset"
        )
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    splits = []
    for fold, part in t.groupby("fold", sort=True):
        idx: dict[str, list[np.ndarray]] = {r: [] for r in ROLES}
        for row in part.itertuples(index=False):
            lo = np.searchsorted(sorted_ids, row.sample_id, side="left")
            hi = np.searchsorted(sorted_ids, row.sample_id, side="right")
            cells = order[lo:hi]
            cells = cells[use[cells]]
            expected = getattr(row, "cells", None)
            if expected is not None and not pd.isna(expected) and int(expected) != cells.size:
                raise CtcidError(
                    f"fold {fold}: the table gives {int(expected)} cell(s) for patient {row.sample_id} "
                    f"but the dataset has {cells.size}; the table belongs to another version of the dataset"
                    + ("" if labels is not None else " (or pass labels to leave out unlabelled cells)")
                )
            idx[str(row.role)].append(cells)
        split = Split(int(fold), **{r: np.concatenate(v) if v else np.empty(0, np.int64) for r, v in idx.items()})
        check_no_leakage(ids, split)
        splits.append(split)
    return splits


def write_fold_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a fold table as CSV, atomically."""
    return atomic_write_text(path, table.to_csv(index=False))


def read_fold_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a fold table written by :func:`write_fold_table`; ``sample_id`` stays text (``007`` is not ``7``)."""
    try:
        table = pd.read_csv(path, dtype={"sample_id": str, "role": str})
    except FileNotFoundError:
        raise CtcidError("fold table not found", path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CtcidError(f"not a readable fold table: {exc}", path) from None
    missing = [c for c in ("fold", "sample_id", "role") if c not in table.columns]
    if missing:
        raise CtcidError(f"not a fold table: column(s) {', '.join(missing)} missing", path)
    if "ctc" in table.columns:
        table["ctc"] = table["ctc"].astype("Int64")
    return table
