"""Labels added to a dataset from a CSV (e.g. a review's ``labels.csv``), without rewriting the dataset.

The CSV is read like ``ingest --labels`` reads one: columns ``cell_id`` and ``label`` (``ctc``/``wbc``, folded
through an optional label map), optionally ``sample_id``; extra columns are ignored. Each listed cell's label is
set (added or replaced); an empty label leaves the cell as it was; cells not listed keep theirs. A cell id the
dataset does not hold is refused, so a labels file of another dataset cannot be applied by mistake.

The returned dataset shares the pixels (memory map), path and fingerprint of the original (cached segmentation
and features stay valid: they do not depend on labels); its header's ``classes`` are recounted and its
``ingest`` record gains ``added_labels`` (file, sha256, cells), which training runs copy into their bundle.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CtcidError
from .layouts import _read_cell_csv, fold_label
from .store import CellDataset

__all__ = ["with_labels"]


def with_labels(
    ds: CellDataset, labels_csv: str | os.PathLike[str], label_map: dict[str, str] | None = None
) -> CellDataset:
    """A copy of ``ds`` whose cells carry the labels of ``labels_csv`` (see the module doc).

    Parameters
    ----------
    ds
        An open dataset (or cohort); it is not changed.
    labels_csv
        CSV with ``cell_id``, ``label`` and optionally ``sample_id`` (needed when cell ids repeat between
        samples).
    label_map
        Raw label -> ``ctc``/``wbc`` (as ``ingest --label-map``).

    Returns
    -------
    CellDataset

    Raises
    ------
    CtcidError
        Unreadable CSV, missing columns, an unknown label, a cell listed twice, or a cell id the dataset lacks.

    Examples
    --------
    >>> ds2 = with_labels(CellDataset.open("dataset"), "labels.csv")      # doctest: +SKIP
    >>> (ds2.labels() >= 0).sum()                                          # doctest: +SKIP
    412
    """
    path = Path(labels_csv)
    if not path.is_file():
        raise CtcidError("labels file not found", path)
    rows, _, cell_col, sample_col, label_col = _read_cell_csv(path, "labels file", sample=False, label=True)
    given = pd.DataFrame(rows)
    mapping = label_map or {}
    folded = []
    for lineno, raw in enumerate(given[label_col], start=2):
        try:
            folded.append(fold_label(raw, mapping))
        except ValueError as exc:
            raise CtcidError(f"line {lineno}: {exc}", path) from None
    given = pd.DataFrame(
        {
            "cell_id": given[cell_col].astype(str),
            "sample_id": given[sample_col].astype(str) if sample_col else None,
            "label": folded,
        }
    )
    table = ds.table
    cells = table["cell_id"].astype(str)
    if sample_col:
        keys = pd.MultiIndex.from_arrays([table["sample_id"].astype(str), cells])
        wanted = pd.MultiIndex.from_arrays([given["sample_id"], given["cell_id"]])
    else:
        if not cells.is_unique:
            raise CtcidError("cell ids repeat between samples in the dataset; add a sample_id column", path)
        keys, wanted = pd.Index(cells), pd.Index(given["cell_id"])
    if wanted.duplicated().any():
        dup = given["cell_id"][wanted.duplicated()].iloc[0]
        raise CtcidError(f"cell {dup!r} is listed twice", path)
    rows_in_ds = pd.Series(np.arange(len(table)), index=keys).reindex(wanted).to_numpy(np.float64)
    unknown = np.isnan(rows_in_ds)
    if unknown.any():
        first = given["cell_id"][unknown].iloc[0]
        where = f" of sample {given['sample_id'][unknown].iloc[0]!r}" if sample_col else ""
        raise CtcidError(
            f"{int(unknown.sum())} labelled cell(s) are not in the dataset {ds.path} (first: {first!r}{where})",
            path,
        )
    has = given["label"].notna().to_numpy()
    target = rows_in_ds[has].astype(np.int64)
    new_table = table.copy()
    labels = new_table["label"].astype(object).to_numpy(copy=True)
    labels[target] = given["label"].to_numpy()[has]
    new_table["label"] = labels
    header = copy.deepcopy(ds.header)
    counts = new_table["label"].fillna("unlabelled").replace("", "unlabelled").value_counts().to_dict()
    header["classes"] = {str(k): int(v) for k, v in sorted(counts.items())}
    header["ingest"] = {
        **(header.get("ingest") or {}),
        "added_labels": {
            "file": str(path.resolve()),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "cells": int(has.sum()),
        },
    }
    return CellDataset(ds.path, header, new_table, ds.pixels)
