"""Reading and checking a clinical table and CTC count files, and joining them patient by patient.

A clinical table has one row per patient: ``sample_id``, ``time_months`` (months from the blood draw to the event
or the last follow-up), ``event`` (1 = death or progression, 0 = censored), optional covariates and optional
``blood_volume_ml``. A counts file has one row per patient: ``sample_id`` and a count column, e.g. the
``counts.csv`` of ``ctcid predict`` or ``ctcid evaluate``, or a two-column CSV of manual counts.

Counts are compared in CTCs per 7.5 mL of blood (the CellSearch unit): a count is divided by its sample's blood
volume and multiplied by 7.5 when the counts file or, failing that, the clinical table gives
``blood_volume_ml``; otherwise it is taken to be per 7.5 mL already, and the result says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..errors import CtcidError, arg

__all__ = [
    "COUNT_COLUMNS",
    "PER_ML",
    "CountSource",
    "check_name",
    "count_columns",
    "parse_count_columns",
    "parse_named",
    "read_clinical",
    "read_counts",
]

#: Count columns tried in order when none is named: the current ``counts.csv`` estimate, then the calls.
COUNT_COLUMNS = ("ctc_estimate", "called_ctc", "predicted_ctc")
#: Counts are compared per this many mL of blood.
PER_ML = 7.5
#: Columns of a counts file that are never the count itself.
_NOT_COUNTS = {"cells", "blood_volume_ml", "count_method"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass
class CountSource:
    """The counts of one source (a reader, a model, ...) for its patients.

    Attributes
    ----------
    name
        Short name used in outputs (``manual``, ``predicted``, ...).
    counts
        CTCs per 7.5 mL, indexed by ``sample_id`` (float).
    raw
        The counts as read, indexed by ``sample_id``.
    column
        The column the counts came from.
    volume
        Where the blood volume came from: ``"counts"``, ``"clinical"``, ``"per 7.5 mL column"`` or
        ``"assumed 7.5 mL"``.
    path
        The file read, or ``None`` for a DataFrame.
    """

    name: str
    counts: pd.Series
    raw: pd.Series
    column: str
    volume: str
    path: Path | None


def parse_named(items: Iterable[str], option: str) -> dict[str, str]:
    """Parse ``["manual=a.csv", "predicted=b.csv"]`` into an ordered ``{name: value}``.

    Examples
    --------
    >>> parse_named(["manual=counts/true.csv", "predicted=run/counts.csv"], "--counts")
    {'manual': 'counts/true.csv', 'predicted': 'run/counts.csv'}
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise CtcidError(f"{option} expects NAME=VALUE (e.g. manual=counts.csv), got {item!r}")
        check_name(name, option)
        if name in out:
            raise CtcidError(f"{option} gives the name {name!r} twice; each source needs its own name")
        out[name] = value
    return out


def check_name(name: str, what: str = "source") -> str:
    """A source name must be a short word usable in a file name (``km_<NAME>.png``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CtcidError(
            f"{what}: source names are 1-40 letters, digits, '_', '.' or '-' (starting with a letter or digit), "
            f"got {name!r}"
        )
    return name


def _read_csv(src: str | os.PathLike[str] | pd.DataFrame, what: str) -> tuple[pd.DataFrame, Path | None]:
    if isinstance(src, pd.DataFrame):
        return src.copy(), None
    path = Path(src)
    if not path.is_file():
        raise CtcidError(f"no such {what} file", path)
    try:
        frame = pd.read_csv(path, dtype={"sample_id": str}, keep_default_na=True, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CtcidError(f"empty {what} file", path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise CtcidError(f"cannot read the {what} CSV ({str(exc).splitlines()[0]})", path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, path


def _first(ids: pd.Series, bad: np.ndarray, n_show: int = 1) -> str:
    """``"P03"`` or ``"P03 (and 4 more)"``."""
    hit = ids[bad].astype(str).tolist()
    more = f" (and {len(hit) - n_show} more)" if len(hit) > n_show else ""
    return ", ".join(hit[:n_show]) + more


def _sample_ids(frame: pd.DataFrame, path: Path | None, what: str) -> pd.Series:
    if "sample_id" not in frame.columns:
        raise CtcidError(
            f"the {what} has no sample_id column (columns: {', '.join(map(str, frame.columns))})", path
        )
    ids = frame["sample_id"]
    missing = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        raise CtcidError(f"{int(missing.sum())} row(s) of the {what} have no sample_id", path)
    ids = ids.astype(str).str.strip()
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup].iloc[0]
        raise CtcidError(
            f"duplicate sample id {first!r} in the {what} ({int(ids.duplicated().sum())} duplicate row(s)); "
            "give one row per patient",
            path,
        )
    return ids


def _numeric(frame: pd.DataFrame, column: str, ids: pd.Series, path: Path | None, what: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
    text = frame[column].notna().to_numpy() & np.isnan(values)
    if text.any():
        bad = frame[column][text].iloc[0]
        raise CtcidError(f"{column} must be a number; got {bad!r} for {_first(ids, text)}", path)
    infinite = np.isinf(values)
    if infinite.any():
        raise CtcidError(f"{column} is infinite for {_first(ids, infinite)}", path)
    return values


def read_clinical(
    clinical: str | os.PathLike[str] | pd.DataFrame,
    *,
    time_column: str = "time_months",
    event_column: str = "event",
    covariates: Iterable[str] = (),
) -> pd.DataFrame:
    """Read and check a clinical table.

    Parameters
    ----------
    clinical
        A CSV file or a DataFrame with one row per patient.
    time_column, event_column
        The follow-up time (months, >= 0) and the event indicator (1 = death or progression, 0 = censored).
    covariates
        Columns to keep for adjustment; numbers are used as they are, other values as categories.

    Returns
    -------
    pandas.DataFrame
        ``sample_id`` (str), ``time`` (float), ``event`` (int 0/1), the covariates, and ``blood_volume_ml`` when
        the table has it; in the table's order.

    Raises
    ------
    CtcidError
        A missing column, a missing or negative time, an event other than 0/1, a duplicate sample id, a missing
        covariate value or a blood volume that is not positive.

    Examples
    --------
    >>> import pandas as pd
    >>> t = read_clinical(pd.DataFrame({"sample_id": ["A", "B"], "time_months": [3.0, 5.5], "event": [1, 0]}))
    >>> t.to_dict("list")
    {'sample_id': ['A', 'B'], 'time': [3.0, 5.5], 'event': [1, 0]}
    """
    frame, path = _read_csv(clinical, "clinical")
    covariates = list(covariates)
    need = [time_column, event_column, *covariates]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise CtcidError(
            f"the clinical table has no column {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(map(str, frame.columns))}); it needs sample_id, {time_column} (months from the blood "
            f"draw to the event or last follow-up) and {event_column} (1 = death or progression, 0 = censored)",
            path,
        )
    if not len(frame):
        raise CtcidError("the clinical table has no patients", path)
    ids = _sample_ids(frame, path, "clinical table")
    time = _numeric(frame, time_column, ids, path, "clinical table")
    if np.isnan(time).any():
        bad = np.isnan(time)
        raise CtcidError(
            f"{int(bad.sum())} patient(s) have no {time_column} (first: {_first(ids, bad)}); every patient needs "
            "a follow-up time",
            path,
        )
    if (time < 0).any():
        bad = time < 0
        raise CtcidError(
            f"{time_column} is negative for {int(bad.sum())} patient(s) (first: {_first(ids, bad)}, "
            f"{time[bad][0]:g}); times are months from the blood draw",
            path,
        )
    event = _numeric(frame, event_column, ids, path, "clinical table")
    bad = ~np.isin(event, (0.0, 1.0))
    if bad.any():
        shown = "missing" if np.isnan(event[bad][0]) else f"{event[bad][0]:g}"
        raise CtcidError(
            f"{event_column} must be 1 (death or progression) or 0 (censored); got {shown} for {_first(ids, bad)}",
            path,
        )
    out = pd.DataFrame({"sample_id": ids.to_numpy(), "time": time, "event": event.astype(np.int64)})
    for name in covariates:
        if name in ("sample_id", time_column, event_column):
            raise CtcidError(f"{name} cannot be a covariate", path)
        col = frame[name]
        nan = col.isna().to_numpy()
        if nan.any():
            raise CtcidError(
                f"covariate {name} is missing for {int(nan.sum())} patient(s) (first: {_first(ids, nan)}); fill "
                "it in or leave the covariate out",
                path,
            )
        out[name] = col.to_numpy()
    if "blood_volume_ml" in frame.columns:
        out["blood_volume_ml"] = _volumes(frame, ids, path, "clinical table")
    return out


def _volumes(frame: pd.DataFrame, ids: pd.Series, path: Path | None, what: str) -> np.ndarray:
    vol = _numeric(frame, "blood_volume_ml", ids, path, what)
    bad = ~(vol > 0)
    if bad.any():
        raise CtcidError(
            f"blood_volume_ml must be a positive number of mL; missing or not positive for {_first(ids, bad)}",
            path,
        )
    return vol


def _choose_column(frame: pd.DataFrame, column: str | None, path: Path | None) -> str:
    if column is not None:
        if column not in frame.columns:
            raise CtcidError(f"no count column {column!r} (columns: {', '.join(map(str, frame.columns))})", path)
        return column
    for name in COUNT_COLUMNS:
        if name in frame.columns:
            return name
    numeric = [
        c
        for c in frame.columns
        if c != "sample_id"
        and c not in _NOT_COUNTS
        and not c.endswith(("_lo", "_hi"))
        and pd.to_numeric(frame[c], errors="coerce").notna().any()
    ]
    if len(numeric) == 1:
        return numeric[0]
    raise CtcidError(
        f"cannot tell which column holds the counts (columns: {', '.join(map(str, frame.columns))}); name it with "
        f"{arg('count_column', ...)} (tried {', '.join(COUNT_COLUMNS)}, then a single numeric column)",
        path,
    )


def read_counts(
    counts: str | os.PathLike[str] | pd.DataFrame,
    *,
    name: str = "counts",
    column: str | None = None,
    clinical: pd.DataFrame | None = None,
) -> CountSource:
    """Read one source's per-patient CTC counts and express them per 7.5 mL of blood.

    Parameters
    ----------
    counts
        A CSV file or DataFrame with ``sample_id`` and a count column: the ``counts.csv`` of ``ctcid predict``
        or ``ctcid evaluate``, or a manual count table of two columns (``sample_id`` and e.g. ``true_ctc``).
    name
        The source's name.
    column
        The count column; by default the first of :data:`COUNT_COLUMNS` present, else the only numeric column
        (besides ``cells``, ``blood_volume_ml`` and interval bounds ``*_lo``/``*_hi``).
    clinical
        The checked clinical table (:func:`read_clinical`); its ``blood_volume_ml`` is used when the counts
        file has none.

    Returns
    -------
    CountSource

    Examples
    --------
    >>> import pandas as pd
    >>> src = read_counts(pd.DataFrame({"sample_id": ["A", "B"], "true_ctc": [3, 10]}), name="manual")
    >>> src.column, src.volume, src.counts.to_dict()
    ('true_ctc', 'assumed 7.5 mL', {'A': 3.0, 'B': 10.0})
    >>> src = read_counts(pd.DataFrame({"sample_id": ["A"], "ctc_estimate": [4.0], "blood_volume_ml": [10.0]}))
    >>> src.counts.to_dict(), src.volume
    ({'A': 3.0}, 'counts')
    """
    check_name(name)
    frame, path = _read_csv(counts, f"{name} counts")
    if not len(frame):
        raise CtcidError(f"the {name} counts file has no rows", path)
    ids = _sample_ids(frame, path, f"{name} counts")
    col = _choose_column(frame, column, path)
    raw = _numeric(frame, col, ids, path, f"{name} counts")
    if np.isnan(raw).any():
        bad = np.isnan(raw)
        raise CtcidError(f"{col} is missing for {int(bad.sum())} patient(s) (first: {_first(ids, bad)})", path)
    if (raw < 0).any():
        bad = raw < 0
        raise CtcidError(f"{col} is negative for {_first(ids, bad)} ({raw[bad][0]:g}); counts are >= 0", path)
    raw_s = pd.Series(raw, index=pd.Index(ids.to_numpy(), name="sample_id"), name=name)
    if col == "ctc_per_7_5ml":
        per = raw_s.copy()
        basis = "per 7.5 mL column"
    elif "blood_volume_ml" in frame.columns:
        vol = _volumes(frame, ids, path, f"{name} counts")
        per = raw_s * (PER_ML / vol)
        basis = "counts"
    elif clinical is not None and "blood_volume_ml" in clinical.columns:
        vol_c = pd.Series(clinical["blood_volume_ml"].to_numpy(), index=clinical["sample_id"].to_numpy())
        per = raw_s * (PER_ML / vol_c.reindex(raw_s.index))  # NaN where the patient is not in the clinical table
        basis = "clinical"
    else:
        per = raw_s.copy()
        basis = "assumed 7.5 mL"
    return CountSource(name=name, counts=per.rename(name), raw=raw_s, column=col, volume=basis, path=path)


def count_columns(count_column: str | Mapping[str, str] | None, names: Iterable[str]) -> dict[str, str | None]:
    """The count column of each source from one name for all, or a ``{source: column}`` mapping."""
    names = list(names)
    if count_column is None or isinstance(count_column, str):
        return dict.fromkeys(names, count_column)
    unknown = sorted(set(count_column) - set(names))
    if unknown:
        raise CtcidError(
            f"{arg('count_column', ...)} names source(s) {', '.join(unknown)} not given with {arg('counts', ...)} "
            f"({', '.join(names)})"
        )
    return {n: count_column.get(n) for n in names}


def parse_count_columns(items: Iterable[str] | None, names: Iterable[str]) -> str | dict[str, str] | None:
    """``--count-column`` values: ``COLUMN`` for every source and/or ``NAME=COLUMN`` for one source.

    Examples
    --------
    >>> parse_count_columns(["true_ctc"], ["manual", "predicted"])
    'true_ctc'
    >>> parse_count_columns(["manual=true_ctc"], ["manual", "predicted"])
    {'manual': 'true_ctc'}
    >>> parse_count_columns(["called_ctc", "manual=true_ctc"], ["manual", "predicted"])
    {'manual': 'true_ctc', 'predicted': 'called_ctc'}
    """
    items = [str(i).strip() for i in items or [] if str(i).strip()]
    if not items:
        return None
    plain = [i for i in items if "=" not in i]
    if len(plain) > 1:
        raise ConfigError(
            "count_column", f"gives more than one column for every source: {', '.join(plain)}", "--count-column"
        )
    named = parse_named([i for i in items if "=" in i], "--count-column")
    if not named:
        return plain[0]
    columns = count_columns(named, names)
    return {n: c if c is not None else plain[0] for n, c in columns.items() if c is not None or plain}
