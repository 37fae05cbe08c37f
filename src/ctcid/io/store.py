"""The cell dataset: the data contract every command after ``ingest`` reads.

A dataset folder holds

``cells.parquet``
    One row per cell: ``cell_id``, ``sample_id`` (patient), ``label`` (``ctc``/``wbc``/empty),
    ``src_<CHANNEL>`` (the source file of each channel, relative to the source root),
    ``orig_height``/``orig_width`` (px), ``scale`` (resize factor applied), ``source_dtype``,
    ``qc_flags`` (``;``-separated, empty when clean) and any extra label columns.
``pixels.u16``
    The packed pixel store: raw little-endian uint16, C order, shape ``[cells, channels, H, W]``,
    read memory-mapped so datasets larger than memory work.
``dataset.json``
    The header: channel names in order, pixel size (um), crop size, per-channel intensity
    statistics, a content fingerprint, the resolved ingest options and package versions. It is
    written last; a folder without it is not a dataset.
``rejected.csv``
    Cells set aside by ``--on-error skip``, with the reason (present only when some were).

A *cohort* folder (``ctcid cohort``) holds only ``shards.json``, which lists dataset folders (shards: one
per centre, run or export) with the same channels, crop and pixel size. It opens as one dataset: the cell
tables are concatenated (with a ``shard`` column) and pixels are read from each shard's memory map, so a
cohort of millions of cells is never copied or loaded whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CtcidError
from ._atomic import atomic_write_text
from ._json import read_versioned_json

__all__ = [
    "COHORT_FORMAT",
    "FORMAT",
    "FORMAT_VERSION",
    "CellDataset",
    "DatasetWriter",
    "ShardedPixels",
    "is_dataset",
    "package_versions",
    "write_cohort",
]

FORMAT = "ctcid-dataset"
FORMAT_VERSION = 1
PIXELS_FILE = "pixels.u16"
TABLE_FILE = "cells.parquet"
HEADER_FILE = "dataset.json"
REJECTED_FILE = "rejected.csv"
COHORT_FILE = "shards.json"
COHORT_FORMAT = "ctcid-cohort"
_PERCENTILES = (0.1, 1.0, 50.0, 99.0, 99.9)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result, for run records."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ctcid", "numpy", "pandas", "pyarrow", "tifffile", "pillow", "scikit-image", "torch", "timm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    import platform

    out["python"] = platform.python_version()
    return out


def summarise_block(pixels: np.ndarray) -> tuple[np.ndarray, bytes]:
    """Per-channel intensity histogram ``[C, 65536]`` and sha256 digest of a block of cells.

    The dataset's statistics are sums of these histograms, and its fingerprint is the sha256 of
    the blocks' digests in order (then of the cell ids and labels), so workers can compute them.
    """
    data = np.ascontiguousarray(pixels, dtype="<u2")
    hist = np.stack([np.bincount(data[:, i].ravel(), minlength=65536) for i in range(data.shape[1])])
    return hist, hashlib.sha256(memoryview(data).cast("B")).digest()


class DatasetWriter:
    """Append cells to a new dataset folder, in order, then write its header.

    Statistics and the fingerprint are accumulated while writing, so nothing is read twice.
    The folder should be a temporary one (see :func:`ctcid.io.atomic_dir`).
    """

    def __init__(self, folder: str | os.PathLike[str], channels: list[str], size: int, pixel_size_um: float):
        self.folder = Path(folder)
        self.channels = list(channels)
        self.size = int(size)
        self.pixel_size_um = float(pixel_size_um)
        self._fh = open(self.folder / PIXELS_FILE, "wb")
        self._hash = hashlib.sha256()
        self._hist = np.zeros((len(channels), 65536), dtype=np.int64)
        self._rows: list[pd.DataFrame] = []
        self.n = 0

    def append(
        self, pixels: np.ndarray, rows: pd.DataFrame, summary: tuple[np.ndarray, bytes] | None = None
    ) -> None:
        """Add cells: ``pixels`` uint16 ``[n, C, size, size]`` and their ``n`` table rows.

        ``summary`` is :func:`summarise_block` of ``pixels`` when already computed (by a worker).
        """
        c, s = len(self.channels), self.size
        if pixels.dtype != np.uint16 or pixels.ndim != 4 or pixels.shape[1:] != (c, s, s):
            raise ValueError(f"expected uint16 [n, {c}, {s}, {s}], got {pixels.dtype} {pixels.shape}")
        if len(rows) != len(pixels):
            raise ValueError("one table row per cell")
        data = np.ascontiguousarray(pixels, dtype="<u2")
        hist, digest = summary if summary is not None else summarise_block(data)
        with self._naming_errors():
            self._fh.write(memoryview(data).cast("B"))
        self._hash.update(digest)
        self._hist += hist
        self._rows.append(rows)
        self.n += len(pixels)

    def _stats(self) -> dict[str, dict[str, float]]:
        values = np.arange(65536, dtype=np.float64)
        stats = {}
        for name, hist in zip(self.channels, self._hist, strict=True):
            total = int(hist.sum())
            if total == 0:
                stats[name] = {}
                continue
            mean = float((hist * values).sum() / total)
            var = float((hist * (values - mean) ** 2).sum() / total)
            nz = np.flatnonzero(hist)
            cum = np.cumsum(hist)
            entry = {"mean": mean, "std": var**0.5, "min": float(nz[0]), "max": float(nz[-1])}
            for p in _PERCENTILES:
                entry[f"p{p:g}"] = float(np.searchsorted(cum, p / 100.0 * total))
            stats[name] = entry
        return stats

    def finish(self, info: dict[str, Any]) -> dict[str, Any]:
        """Write the table and the header; returns the header."""
        with self._naming_errors():
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        table = pd.concat(self._rows, ignore_index=True) if self._rows else pd.DataFrame()
        table.insert(0, "index", np.arange(len(table), dtype=np.int64))
        self._hash.update(
            table[["cell_id", "sample_id", "label"]].to_csv(index=False).encode() if len(table) else b""
        )
        table.to_parquet(self.folder / TABLE_FILE, index=False)
        counts = table["label"].fillna("unlabelled").value_counts().to_dict() if len(table) else {}
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_cells": self.n,
            "n_samples": int(table["sample_id"].nunique()) if len(table) else 0,
            "channels": self.channels,
            "pixel_size_um": self.pixel_size_um,
            "crop_size": [self.size, self.size],
            "classes": {k: int(v) for k, v in sorted(counts.items())},
            "pixels": {
                "file": PIXELS_FILE,
                "dtype": "<u2",
                "shape": [self.n, len(self.channels), self.size, self.size],
                "order": "C",
            },
            "table": TABLE_FILE,
            "channel_stats": self._stats(),
            "fingerprint": "sha256:" + self._hash.hexdigest(),
            "versions": package_versions(),
            **info,
        }
        atomic_write_text(self.folder / HEADER_FILE, json.dumps(header, indent=2) + "\n")
        return header

    @contextlib.contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A failed write of the pixel store names it (the operating system's error names no file)."""
        try:
            yield
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self.folder / PIXELS_FILE)
            raise

    def abort(self) -> None:
        """Close the pixel store after a failure; closing may fail again (a full disk), which is not news."""
        if not self._fh.closed:
            with contextlib.suppress(OSError):
                self._fh.close()


class CellDataset:
    """An ingested dataset, opened read-only with its pixels memory-mapped.

    Examples
    --------
    >>> ds = CellDataset.open("dataset")                      # doctest: +SKIP
    >>> ds.images([0, 5], channels=["BF"]).shape               # doctest: +SKIP
    (2, 1, 80, 80)
    """

    def __init__(self, path: Path, header: dict[str, Any], table: pd.DataFrame, pixels: np.ndarray):
        self.path = path
        self.header = header
        self.table = table
        self.pixels = pixels

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> CellDataset:
        """Open and check a dataset folder; a folder that is not a complete dataset is refused."""
        path = Path(path)
        head = path / HEADER_FILE
        if not path.is_dir():
            raise CtcidError("no such dataset folder (create one with `ctcid ingest`)", path)
        if (path / COHORT_FILE).is_file() and not head.is_file():
            return _open_cohort(path)
        if not head.is_file():
            raise CtcidError(
                f"not a ctcid dataset: {HEADER_FILE} is missing (an incomplete or foreign folder)", path
            )
        header = read_versioned_json(head, FORMAT, FORMAT_VERSION, "dataset header")
        try:
            spec = header["pixels"]
            shape = tuple(int(s) for s in spec["shape"])
            channels = list(header["channels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CtcidError(f"dataset header lacks {exc}", head) from None
        pix = path / spec["file"]
        expected = int(np.prod(shape, dtype=np.int64)) * 2
        if not pix.is_file() or pix.stat().st_size != expected:
            raise CtcidError(
                f"pixel store {spec['file']} is missing or has the wrong size (expected {expected} bytes)", path
            )
        if len(shape) != 4 or shape[1] != len(channels):
            raise CtcidError("pixel store shape does not match the channel list", head)
        try:
            table = pd.read_parquet(path / header.get("table", TABLE_FILE))
        except Exception as exc:
            raise CtcidError(
                f"cell table cannot be read ({type(exc).__name__}: {exc})", path / TABLE_FILE
            ) from None
        if len(table) != shape[0]:
            raise CtcidError(f"cell table has {len(table)} rows but the pixel store holds {shape[0]} cells", path)
        pixels = (
            np.memmap(pix, dtype="<u2", mode="r", shape=shape) if shape[0] else np.zeros(shape, dtype=np.uint16)
        )
        return cls(path, header, table, pixels)

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __repr__(self) -> str:
        return (
            f"CellDataset({str(self.path)!r}, cells={len(self)}, samples={self.header.get('n_samples')}, "
            f"channels={self.channels}, crop={self.crop_size})"
        )

    @property
    def channels(self) -> list[str]:
        return list(self.header["channels"])

    @property
    def pixel_size_um(self) -> float:
        return float(self.header["pixel_size_um"])

    @property
    def crop_size(self) -> tuple[int, int]:
        h, w = self.header["crop_size"]
        return int(h), int(w)

    @property
    def fingerprint(self) -> str:
        return str(self.header["fingerprint"])

    def channel_index(self, channels: list[str] | None) -> list[int]:
        """Positions of ``channels`` in the store; an unknown channel is a clear error."""
        if channels is None:
            return list(range(len(self.channels)))
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise CtcidError(
                f"dataset has no channel(s) {', '.join(missing)} (it has {', '.join(self.channels)})", self.path
            )
        return [self.channels.index(c) for c in channels]

    def images(self, index: Any = slice(None), channels: list[str] | None = None) -> np.ndarray:
        """Pixels of the cells at ``index`` (rows of the table), uint16 ``[n, C, H, W]``, in memory."""
        chan = self.channel_index(channels)
        if isinstance(index, slice):
            block = self.pixels[index]
        else:
            idx = np.asarray(index, dtype=np.int64)
            order = np.argsort(idx, kind="stable")
            block = np.empty((len(idx), *self.pixels.shape[1:]), dtype=np.uint16)
            block[order] = self.pixels[idx[order]]  # sorted reads are sequential on disk
        return np.ascontiguousarray(block[:, chan]) if chan != list(range(len(self.channels))) else np.array(block)

    def labels(self) -> np.ndarray:
        """Class of each cell as int8: 1 ``ctc``, 0 ``wbc``, -1 unlabelled."""
        lab = self.table["label"]
        return np.where(lab == "ctc", 1, np.where(lab == "wbc", 0, -1)).astype(np.int8)

    def rejected(self) -> pd.DataFrame:
        """Cells set aside at ingest (empty when none were); for a cohort, those of every shard."""
        shards = self.header.get("shards")
        paths = [Path(sh["path"]) for sh in shards] if shards else [self.path]
        frames = [pd.read_csv(p / REJECTED_FILE) for p in paths if (p / REJECTED_FILE).is_file()]
        if not frames:
            return pd.DataFrame(columns=["sample_id", "cell_id", "file", "reason"])
        return pd.concat(frames, ignore_index=True)


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a dataset (or cohort) folder, as opposed to an export or anything else."""
    path = Path(path)
    return (path / HEADER_FILE).is_file() or (path / COHORT_FILE).is_file()


class ShardedPixels:
    """Several memory-mapped pixel stores read as one ``[cells, C, H, W]`` array (slices and index arrays)."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.nbytes = int(sum(p.nbytes for p in parts))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            return self[np.arange(*index.indices(self.shape[0]))]
        if np.isscalar(index):
            return self[np.array([index])][0]
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < -self.shape[0] or idx.max() >= self.shape[0]):
            raise IndexError("cell index out of range")
        idx = np.where(idx < 0, idx + self.shape[0], idx)
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        for k in np.unique(shard):
            sel = np.flatnonzero(shard == k)
            out[sel] = self.parts[k][idx[sel] - self.offsets[k]]
        return out


def write_cohort(
    out: str | os.PathLike[str], datasets: list[str | os.PathLike[str]], overwrite: bool = False
) -> Path:
    """Write a cohort folder listing ``datasets`` (checked to be compatible), atomically."""
    from ._atomic import atomic_dir

    if not datasets:
        raise CtcidError("a cohort needs at least one dataset")
    shards = [CellDataset.open(d) for d in datasets]
    _check_shards(shards)
    with atomic_dir(out, overwrite) as tmp:
        body = {
            "format": COHORT_FORMAT,
            "format_version": FORMAT_VERSION,
            "shards": [str(Path(d).resolve()) for d in datasets],
            "versions": package_versions(),
        }
        (tmp / COHORT_FILE).write_text(json.dumps(body, indent=2) + "\n")
    return Path(out)


def _check_shards(shards: list[CellDataset]) -> None:
    first = shards[0]
    for ds in shards[1:]:
        for what, a, b in (
            ("channels", first.channels, ds.channels),
            ("crop size", first.crop_size, ds.crop_size),
            ("pixel size", first.pixel_size_um, ds.pixel_size_um),
        ):
            if a != b:
                raise CtcidError(f"shards differ in {what} ({a} in {first.path}, {b} here)", ds.path)
    keys = pd.concat([s.table[["sample_id", "cell_id"]] for s in shards])
    if keys.duplicated().any():
        sample, cell = keys[keys.duplicated()].iloc[0]
        raise CtcidError(f"cell {cell} of sample {sample} is in more than one shard")


def _merged_stats(shards: list[CellDataset]) -> dict[str, dict[str, float]]:
    """Cohort intensity statistics: cell-weighted mean and spread; the widest p0.1-p99.9 window."""
    weights = np.array([len(s) for s in shards], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for ch in shards[0].channels:
        stats = [s.header["channel_stats"].get(ch) or {} for s in shards]
        if not all(stats):
            out[ch] = {}
            continue
        w = weights / weights.sum()
        mean = float(sum(wi * st["mean"] for wi, st in zip(w, stats, strict=True)))
        var = float(sum(wi * (st["std"] ** 2 + (st["mean"] - mean) ** 2) for wi, st in zip(w, stats, strict=True)))
        entry = {
            "mean": mean,
            "std": var**0.5,
            "min": min(st["min"] for st in stats),
            "max": max(st["max"] for st in stats),
        }
        for key in (k for k in stats[0] if k.startswith("p")):
            values = [st[key] for st in stats]
            level = float(key[1:])
            if level < 50:  # lower edge of the window: the lowest of the shards
                entry[key] = min(values)
            elif level > 50:  # upper edge: the highest
                entry[key] = max(values)
            else:
                entry[key] = float(np.average(values, weights=weights))
        out[ch] = entry
    return out


def _open_cohort(path: Path) -> CellDataset:
    body = read_versioned_json(path / COHORT_FILE, COHORT_FORMAT, FORMAT_VERSION, "cohort file")
    names = body.get("shards")
    if not isinstance(names, list) or not names:
        raise CtcidError("cohort file lists no shards", path / COHORT_FILE)
    shards = [CellDataset.open(path / n if not Path(n).is_absolute() else n) for n in names]
    _check_shards(shards)
    tables = []
    for k, s in enumerate(shards):
        t = s.table.copy()
        t.insert(1, "shard", k)
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    table["index"] = np.arange(len(table), dtype=np.int64)
    first = shards[0].header
    digest = hashlib.sha256("".join(s.fingerprint for s in shards).encode()).hexdigest()
    counts = table["label"].fillna("unlabelled").replace("", "unlabelled").value_counts().to_dict()
    header = {
        "format": COHORT_FORMAT,
        "n_cells": len(table),
        "n_samples": int(table["sample_id"].nunique()),
        "channels": first["channels"],
        "pixel_size_um": first["pixel_size_um"],
        "crop_size": first["crop_size"],
        "classes": {k: int(v) for k, v in sorted(counts.items())},
        "channel_stats": _merged_stats(shards),
        "fingerprint": "sha256:" + digest,
        "source": {"root": str(path), "layout": "cohort", "detected": False},
        "ingest": first.get("ingest", {}),
        "rejected": int(sum(int(s.header.get("rejected", 0)) for s in shards)),
        "shards": [{"path": str(s.path), "cells": len(s), "fingerprint": s.fingerprint} for s in shards],
    }
    return CellDataset(path, header, table, ShardedPixels([s.pixels for s in shards]))
