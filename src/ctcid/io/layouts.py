"""Find the cells in an instrument's export: one plan per layout, before any pixel is decoded.

A *layout* turns a source folder (or manifest) into a list of :class:`CellSource`, each naming
the sample (patient), the cell, its label and, for every channel, the file and the plane in
that file that holds it. Problems found at this stage (missing channel files, duplicate cell
ids, unknown labels) are reported per cell, so that ``--on-error skip`` can set them aside.

Layouts
-------
``deparray``
    One file per cell per channel, ``SAMPLE/CELLID_CHANNEL.tif``; labels from ``labels.csv``
    (or ``--labels``) or from a class folder, ``SAMPLE/CLASS/...`` or ``CLASS/SAMPLE/...``.
``manifest``
    A CSV with one row per cell: ``cell_id``, ``sample_id``, optional ``label`` and one column
    per channel holding a path (relative to the CSV's folder).
``stack``
    One multi-channel TIFF per cell, ``SAMPLE/CELLID.tif``, planes C x H x W or H x W x C.
``class-folders``
    ``ROOT/CLASS/[SAMPLE/]*.png|jpg|tif`` with RGB composites split into named channels.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import CtcidError, InputError, arg

__all__ = [
    "CLASSES",
    "KNOWN_CHANNELS",
    "LAYOUTS",
    "CellSource",
    "IngestPlan",
    "Rejection",
    "detect_layout",
    "plan_ingest",
]

#: The two classes every label is folded into.
CLASSES = ("ctc", "wbc")
#: Layout names accepted by ``--layout``.
LAYOUTS = ("auto", "deparray", "manifest", "stack", "class-folders")
#: Channel names seen in DEPArray and other exports; used to recognise ``CELL_CHANNEL`` names.
KNOWN_CHANNELS = (
    "BF",
    "DAPI",
    "CK",
    "CD45",
    "FITC",
    "PE",
    "APC",
    "CY5",
    "CY3",
    "TRITC",
    "HOECHST",
    "EPCAM",
    "VIM",
    "HER2",
    "PDL1",
    "GFP",
    "RFP",
    "BRIGHTFIELD",
)
_CANONICAL_ORDER = ("BF", "DAPI", "CK", "CD45")
_MANIFEST_NAMES = ("manifest.csv", "cells.csv")
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif")
_RGB = {"R": 0, "G": 1, "B": 2, "RED": 0, "GREEN": 1, "BLUE": 2}
_ALIASES = {
    "cell_id": ("cell_id", "cell", "cellid", "id", "object_id"),
    "sample_id": ("sample_id", "sample", "patient", "patient_id", "sampleid"),
    "label": ("label", "class", "cell_class", "y"),
}


@dataclass
class CellSource:
    """Where one cell's pixels live: ``files`` maps channel -> (path, plane or None)."""

    sample_id: str
    cell_id: str
    label: str | None
    files: dict[str, tuple[str, int | None]]
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Rejection:
    """One cell (or file) set aside, with the reason."""

    sample_id: str
    cell_id: str
    file: str
    reason: str

    def as_error(self) -> InputError:
        who = f" (sample {self.sample_id}, cell {self.cell_id})" if self.cell_id else ""
        return InputError(self.reason + who, self.file)


@dataclass
class IngestPlan:
    """The outcome of reading a source's structure: cells to decode, channels, and early rejections."""

    layout: str
    detected: bool
    root: Path
    channels: list[str]
    cells: list[CellSource]
    rejected: list[Rejection]
    channel_axis: str = "auto"
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers


def _order_channels(names: list[str]) -> list[str]:
    first = [c for c in _CANONICAL_ORDER if c in names]
    return first + sorted(c for c in names if c not in first)


class _Entry(NamedTuple):
    """A file found under the source root: full path, path parts below the root, stem, whether a link."""

    path: str
    parts: tuple[str, ...]
    stem: str
    link: bool


def _walk_images(root: Path) -> list[_Entry]:
    """Image-like files under ``root``, sorted, skipping hidden entries and never following directory links."""
    found: list[_Entry] = []

    def visit(folder: str, parts: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                visit(e.path, (*parts, e.name))
            elif e.name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(_Entry(e.path, (*parts, e.name), os.path.splitext(e.name)[0], e.is_symlink()))

    visit(str(root), ())
    return found


def _inside(root: Path, path: str) -> bool:
    """False for a link that points outside the input root."""
    try:
        Path(path).resolve(strict=True).relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _path_id(parts: tuple[str, ...], stem: str) -> str:
    """A cell id from a file's folders below the export's root and its stem: ``CTC/c0`` for ``CTC/c0.png``."""
    return "/".join((*parts, stem))


def _repeated_name(keys: list[tuple[str, tuple[str, ...], str]]) -> str | None:
    """The path id of a file whose (sample, name) pair occurs in more than one folder, as when each class folder
    numbers its cells from 1 (``CTC/c0.png`` and ``WBC/c0.png``); ``None`` when names do not repeat."""
    folders: dict[tuple[str, str], tuple[str, ...]] = {}
    for sample, parts, name in keys:
        if folders.setdefault((sample, name), parts) != parts:
            return _path_id(parts, name)
    return None


#: Said by ingest when every cell has the same sample (patient) id (the arguments filled in by
#: :func:`ctcid.errors.arg`).
ONE_SAMPLE_NOTE = (
    "every cell has the same sample id ({sample}): fine to predict, but `ctcid train` and `cv` split by patient "
    "and will refuse it; if the cells come from several patients, ingest again with {sample_regex} (the patient "
    "from file names) or from a manifest with a sample_id column; if the patients are truly unknown, train with "
    "{samples_unknown}"
)
#: Said by ingest when cell ids come from paths.
PATH_IDS_NOTE = (
    "file names repeat across class or sample folders (e.g. {example}): cell ids are the paths relative to the "
    "export's root, without extension"
)


def fold_label(raw: object, label_map: dict[str, str]) -> str | None:
    """Map a raw label or folder name onto ``ctc``/``wbc``; ``None`` for an empty label.

    Raises ``ValueError`` (with the message shown to the user) for a label outside the map.
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        return None
    text = str(raw).strip()
    if text == "":
        return None
    lowered = {k.lower(): v for k, v in label_map.items()}
    mapped = label_map.get(text, lowered.get(text.lower(), text))
    folded = str(mapped).strip().lower()
    if folded not in CLASSES:
        hint = (
            f"; fold it with {arg('label_map', {text: 'ctc'})} or {arg('label_map', {text: 'wbc'})}"
            if text == mapped
            else ""
        )
        raise ValueError(f"unknown label {text!r} (labels must be one of {', '.join(CLASSES)}{hint})")
    return folded


def _class_name(name: str, label_map: dict[str, str]) -> bool:
    return name in label_map or name.lower() in CLASSES or name.lower() in {k.lower() for k in label_map}


def _pick_column(columns: list[str], key: str, path: Path, required: bool) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    for alias in _ALIASES[key]:
        if alias in lowered:
            return lowered[alias]
    if required:
        raise CtcidError(f"missing column {key!r} (found columns: {', '.join(columns) or 'none'})", path)
    return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV strictly: every row must have as many fields as the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(65536)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.reader(fh, dialect)
            header = next(reader, None)
            if not header or all(not h.strip() for h in header):
                raise CtcidError("empty CSV: no header row", path)
            header = [h.strip() for h in header]
            dupes = [h for h, n in Counter(header).items() if n > 1]
            if dupes:
                raise CtcidError(f"duplicate column(s) {', '.join(dupes)}", path)
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not v.strip() for v in row):
                    continue
                if len(row) != len(header):
                    raise CtcidError(f"line {lineno} has {len(row)} fields, the header has {len(header)}", path)
                rows.append({h: v.strip() for h, v in zip(header, row, strict=True)})
            return rows
    except UnicodeDecodeError:
        raise CtcidError("not a UTF-8 text CSV file", path) from None
    except csv.Error as exc:
        raise CtcidError(f"malformed CSV ({exc})", path) from None
    except OSError as exc:
        raise CtcidError(f"cannot be read ({exc.strerror or exc})", path) from None


class _CellCsv(NamedTuple):
    """The rows of a CSV of cells, its columns and which of them hold the cell id, sample id and label."""

    rows: list[dict[str, str]]
    columns: list[str]
    cell: str
    sample: str | None
    label: str | None


def _read_cell_csv(path: Path, what: str, *, sample: bool, label: bool) -> _CellCsv:
    """Read a CSV of cells (refused without rows) and find its ``cell_id`` column and its ``sample_id`` and
    ``label`` columns, each refused when missing if ``sample`` or ``label`` says it is required."""
    rows = _read_csv(path)
    if not rows:
        raise CtcidError(f"{what} has no rows", path)
    columns = list(rows[0])
    cell_col = _pick_column(columns, "cell_id", path, True)
    sample_col = _pick_column(columns, "sample_id", path, sample)
    label_col = _pick_column(columns, "label", path, label)
    return _CellCsv(rows, columns, cell_col, sample_col, label_col)  # type: ignore[arg-type]


class _Labels:
    """Labels from a CSV, looked up by (sample, cell) or by cell alone."""

    def __init__(self, path: Path, label_map: dict[str, str]):
        self.path = path
        rows, columns, cell_col, sample_col, label_col = _read_cell_csv(
            path, "labels file", sample=False, label=True
        )
        self.by_key: dict[tuple[str | None, str], dict[str, str]] = {}
        self.with_sample = sample_col is not None
        self.label_col = label_col
        self.extra_cols = [c for c in columns if c not in (cell_col, label_col, sample_col)]
        for lineno, row in enumerate(rows, start=2):
            key = (row[sample_col] if sample_col else None, row[cell_col])
            if key in self.by_key:
                raise CtcidError(f"duplicate cell id {key[1]!r} on line {lineno}", path)
            self.by_key[key] = row
        self.label_map = label_map
        self.used: set[tuple[str | None, str]] = set()

    def lookup(self, sample_id: str, cell_id: str) -> dict[str, str] | None:
        key = (sample_id if self.with_sample else None, cell_id)
        row = self.by_key.get(key)
        if row is not None:
            self.used.add(key)
        return row


# --------------------------------------------------------------------------------------------- detection


def _split_channel(stem: str) -> tuple[str, str] | None:
    if "_" not in stem:
        return None
    cell, channel = stem.rsplit("_", 1)
    return (cell, channel) if cell and channel else None


def _looks_like_deparray(files: list[_Entry], channel_map: dict[str, str]) -> bool:
    splits = [_split_channel(f.stem) for f in files]
    if not files or any(s is None for s in splits):
        return False
    suffixes = Counter(s[1] for s in splits if s)
    cells = {(f.parts[:-1], s[0]) for f, s in zip(files, splits, strict=True) if s}
    known = {c.upper() for c in KNOWN_CHANNELS} | {k.upper() for k in channel_map}
    if len(suffixes) == 1:
        return next(iter(suffixes)).upper() in known
    return len(suffixes) <= 16 and len(files) >= 1.5 * len(cells)


def detect_layout(
    src: Path, channel_map: dict[str, str] | None = None, files: list[_Entry] | None = None
) -> tuple[str, str]:
    """Guess the layout of ``src``; returns ``(layout, why)``."""
    channel_map = channel_map or {}
    if src.is_file():
        return "manifest", "a CSV file was given"
    if not src.is_dir():
        raise CtcidError("no such file or folder", src)
    manifests = sorted(p for p in src.glob("*.csv") if p.name.lower() in _MANIFEST_NAMES)
    if manifests:
        return "manifest", f"found {manifests[0].name}"
    files = _walk_images(src) if files is None else files
    if not files:
        raise CtcidError("empty folder: no image files (.tif, .png, .jpg, ...) found", src)
    if _looks_like_deparray(files, channel_map):
        chans = sorted({s[1] for f in files if (s := _split_channel(f.stem))})
        return "deparray", f"files named CELL_CHANNEL with channels {', '.join(chans)}"
    from .imread import read_image

    first = read_image(files[0].path)
    if first.axes == "CYX" or (first.axes == "YXS" and first.data.shape[-1] not in (3, 4)):
        return "stack", f"{files[0].parts[-1]} holds {first.data.shape} planes, one file per cell"
    if len(files[0].parts) >= 2:
        return "class-folders", "one image per cell under class folders"
    return "stack", "one image per cell"


# --------------------------------------------------------------------------------------------- layouts


def _labels_file(src: Path, labels: str | os.PathLike[str] | None) -> Path | None:
    if labels is not None:
        path = Path(labels)
        if not path.is_file():
            raise CtcidError("labels file not found", path)
        return path
    default = src / "labels.csv"
    return default if default.is_file() else None


def _apply_labels(
    cells: list[CellSource], rejected: list[Rejection], table: _Labels | None, label_map: dict[str, str]
) -> list[CellSource]:
    kept = []
    for cell in cells:
        any_file = next(iter(cell.files.values()))[0]
        raw = cell.label
        if table is not None:
            row = table.lookup(cell.sample_id, cell.cell_id)
            if row is None:
                rejected.append(
                    Rejection(cell.sample_id, cell.cell_id, any_file, f"no row for this cell in {table.path.name}")
                )
                continue
            raw = row[table.label_col]
            cell.extra.update({c: row[c] for c in table.extra_cols})
        try:
            cell.label = fold_label(raw, label_map)
        except ValueError as exc:
            rejected.append(Rejection(cell.sample_id, cell.cell_id, any_file, str(exc)))
            continue
        kept.append(cell)
    return kept


def _per_file_cells(
    src: Path, files: list[_Entry], label_map: dict[str, str], rejected: list[Rejection]
) -> list[tuple[_Entry, str, str | None]]:
    """Sample and class folder for each file: ``SAMPLE/[CLASS/]f``, ``CLASS/SAMPLE/f`` or ``f``."""
    out = []
    for f in files:
        parts = f.parts
        if f.link and not _inside(src, f.path):
            rejected.append(Rejection("", "", f.path, "link points outside the input folder; refused"))
            continue
        if len(parts) == 1:
            out.append((f, src.name, None))
        elif len(parts) == 2:
            if _class_name(parts[0], label_map):
                out.append((f, src.name, parts[0]))
            else:
                out.append((f, parts[0], None))
        elif len(parts) == 3:
            if _class_name(parts[0], label_map) and not _class_name(parts[1], label_map):
                out.append((f, parts[1], parts[0]))
            else:
                out.append((f, parts[0], parts[1]))
        else:
            rejected.append(Rejection("", "", f.path, "too deeply nested: expected SAMPLE/[CLASS/]file"))
    return out


def _plan_deparray(
    src, channels, channel_map, label_map, labels, rejected, files, notes
) -> tuple[list[str], list[CellSource]]:
    groups: dict[tuple[str, tuple[str, ...], str], CellSource] = {}
    duplicates: set[tuple[str, tuple[str, ...], str]] = set()
    for f, sample, klass in _per_file_cells(src, files, label_map, rejected):
        split = _split_channel(f.stem)
        if split is None:
            rejected.append(
                Rejection(sample, "", f.path, "file name does not end in _CHANNEL (e.g. CELL1_BF.tif)")
            )
            continue
        cell_id, raw_channel = split
        channel = channel_map.get(raw_channel, channel_map.get(raw_channel.upper(), raw_channel))
        if channels and channel not in channels:
            continue
        key = (sample, f.parts[:-1], cell_id)
        cell = groups.setdefault(key, CellSource(sample, cell_id, klass, {}))
        if channel in cell.files or (cell.label != klass):
            duplicates.add(key)
            continue
        cell.files[channel] = (f.path, None)
    example = _repeated_name(list(groups))
    if example:
        notes.append(PATH_IDS_NOTE.format(example=example))
        for (_, parts, name), cell in groups.items():
            cell.cell_id = _path_id(parts, name)
    found = _order_channels(sorted({c for cell in groups.values() for c in cell.files}))
    wanted = list(channels) if channels else found
    cells = []
    for key, cell in groups.items():
        any_file = next(iter(cell.files.values()))[0]
        if key in duplicates:
            why = "duplicate cell id: more than one file for the same channel"
            rejected.append(Rejection(cell.sample_id, cell.cell_id, any_file, why))
            continue
        missing = [c for c in wanted if c not in cell.files]
        if missing:
            example = Path(any_file).with_name(f"{key[2]}_{missing[0]}{Path(any_file).suffix}")
            why = f"missing channel file for {', '.join(missing)}"
            rejected.append(Rejection(cell.sample_id, cell.cell_id, str(example), why))
            continue
        cells.append(cell)
    table = _Labels(lab, label_map) if (lab := _labels_file(src, labels)) else None
    if table is not None and any(c.label is not None for c in cells):
        raise CtcidError("labels come both from class folders and from a labels CSV; use one", table.path)
    return wanted, _apply_labels(cells, rejected, table, label_map)


def _plan_manifest(
    src, channels, channel_map, label_map, labels, rejected, files, notes
) -> tuple[list[str], list[CellSource]]:
    path = src if src.is_file() else next(p for p in src.glob("*.csv") if p.name.lower() in _MANIFEST_NAMES)
    rows, columns, cell_col, sample_col, label_col = _read_cell_csv(path, "manifest", sample=True, label=False)
    others = [c for c in columns if c not in (cell_col, sample_col, label_col)]
    renamed = {c: channel_map.get(c, c) for c in others}
    if channels:
        by_name = {v: k for k, v in renamed.items()}
        absent = [c for c in channels if c not in by_name]
        if absent:
            raise CtcidError(f"no column for channel(s) {', '.join(absent)} (columns: {', '.join(columns)})", path)
        channel_cols = {c: by_name[c] for c in channels}
    else:
        channel_cols = {renamed[c]: c for c in others if rows[0][c].lower().endswith(IMAGE_EXTENSIONS)}
        if not channel_cols:
            raise CtcidError(
                "no channel columns: no column holds image paths in the first row; name them with "
                f"{arg('channels', ...)}",
                path,
            )
    order = list(channels) if channels else _order_channels(list(channel_cols))
    extra_cols = [c for c in others if c not in channel_cols.values()]
    base = path.parent
    seen: set[tuple[str, str]] = set()
    images: dict[tuple[str, ...], str] = {}
    cells = []
    for lineno, row in enumerate(rows, start=2):
        sample, cell_id = row[sample_col], row[cell_col]
        where = f"{path}:{lineno}"
        if not cell_id or not sample:
            rejected.append(Rejection(sample, cell_id, where, "empty cell_id or sample_id"))
            continue
        if (sample, cell_id) in seen:
            rejected.append(Rejection(sample, cell_id, where, "duplicate cell id"))
            continue
        seen.add((sample, cell_id))
        files, missing = {}, []
        for ch in order:
            value = row[channel_cols[ch]]
            if not value:
                missing.append(ch)
                continue
            p = Path(value) if Path(value).is_absolute() else base / value
            files[ch] = (str(p), None)
        if missing:
            rejected.append(Rejection(sample, cell_id, where, f"missing channel file for {', '.join(missing)}"))
            continue
        image = tuple(os.path.realpath(p) for p, _ in files.values())
        if image in images:
            rejected.append(Rejection(sample, cell_id, where, f"the same image as cell {images[image]}"))
            continue
        images[image] = cell_id
        cells.append(
            CellSource(
                sample, cell_id, row[label_col] if label_col else None, files, {c: row[c] for c in extra_cols}
            )
        )
    table = _Labels(lab, label_map) if labels is not None and (lab := _labels_file(base, labels)) else None
    return order, _apply_labels(cells, rejected, table, label_map)


def _plan_single_file(
    src,
    channels,
    channel_map,
    label_map,
    labels,
    rejected,
    files,
    notes,
    *,
    rgb: bool,
    sample_regex: str | None,
    channel_axis: str,
) -> tuple[list[str], list[CellSource]]:
    pattern = re.compile(sample_regex) if sample_regex else None
    if rgb:
        mapping = channel_map or {"R": "R", "G": "G", "B": "B"}
        planes = {}
        for comp, name in mapping.items():
            if comp.upper() not in _RGB:
                raise CtcidError(
                    f"{arg('channel_map', ...)} for class folders maps R, G or B to a channel name, got {comp!r}"
                )
            planes[name] = _RGB[comp.upper()]
        order = list(channels) if channels else list(planes)
        absent = [c for c in order if c not in planes]
        if absent:
            raise CtcidError(f"channel(s) {', '.join(absent)} are not in the channel map {mapping}")
    else:
        if channels:
            order = list(channels)
        else:
            from .imread import as_planes, read_image

            n = len(as_planes(read_image(files[0].path), files[0].path, channel_axis))
            order = [f"C{i}" for i in range(n)]
        order = [channel_map.get(c, c) for c in order]
        planes = {name: i for i, name in enumerate(order)}
    found = []
    for f, sample, klass in _per_file_cells(src, files, label_map, rejected):
        if pattern is not None:
            m = pattern.search(f.stem)
            sample = (m.group(1) if m.groups() else m.group(0)) if m else sample
        if rgb and klass is None and len(f.parts) >= 2:
            klass = f.parts[0]
        found.append((f, sample, klass))
    example = _repeated_name([(sample, f.parts[:-1], f.stem) for f, sample, _ in found])
    by_path = example is not None
    if by_path:
        notes.append(PATH_IDS_NOTE.format(example=example))
    seen: set[tuple[str, str]] = set()
    images: dict[str, str] = {}
    cells = []
    for f, sample, klass in found:
        cell_id = _path_id(f.parts[:-1], f.stem) if by_path else f.stem
        if (sample, cell_id) in seen:
            rejected.append(Rejection(sample, cell_id, f.path, "duplicate cell id"))
            continue
        real = os.path.realpath(f.path)
        if real in images:
            rejected.append(Rejection(sample, cell_id, f.path, f"the same image as cell {images[real]}"))
            continue
        seen.add((sample, cell_id))
        images[real] = cell_id
        cells.append(CellSource(sample, cell_id, klass, {c: (f.path, planes[c]) for c in order}))
    table = _Labels(lab, label_map) if (lab := _labels_file(src, labels)) else None
    if table is not None and any(c.label is not None for c in cells):
        raise CtcidError("labels come both from class folders and from a labels CSV; use one", table.path)
    return order, _apply_labels(cells, rejected, table, label_map)


def plan_ingest(
    src: str | os.PathLike[str],
    *,
    layout: str = "auto",
    channels: list[str] | None = None,
    channel_map: dict[str, str] | None = None,
    label_map: dict[str, str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    channel_axis: str = "auto",
    sample_regex: str | None = None,
) -> IngestPlan:
    """List the cells of an export and the files behind each of their channels.

    Parameters
    ----------
    src
        The export folder, or a manifest CSV.
    layout
        One of :data:`LAYOUTS`; ``"auto"`` detects it and says why in ``plan.notes``.
    channels
        Channels to keep, in order. Default: every channel found (BF, DAPI, CK, CD45 first).
    channel_map
        Source channel name -> dataset channel name (``{"FITC": "CK"}``); for class folders,
        colour component -> channel name (``{"R": "CK", "G": "CD45", "B": "DAPI"}``).
    label_map
        Label or folder name -> ``ctc`` / ``wbc`` (``{"noCTC": "wbc"}``).
    labels
        A labels CSV (columns ``cell_id``, ``label``, optional ``sample_id``); by default
        ``labels.csv`` in ``src`` when present.
    channel_axis
        For ``stack``: ``"first"`` (C x H x W), ``"last"`` (H x W x C) or ``"auto"``.
    sample_regex
        For ``stack`` and ``class-folders``: a regular expression whose first group, searched in
        the file name, is the sample (patient) id, when samples are not folders.
    """
    src = Path(src)
    channel_map = dict(channel_map or {})
    label_map = dict(label_map or {})
    if layout not in LAYOUTS:
        raise CtcidError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not src.exists():
        raise CtcidError("no such file or folder", src)
    notes = []
    detected = layout == "auto"
    files = _walk_images(src) if src.is_dir() else []
    if detected:
        layout, why = detect_layout(src, channel_map, files)
        notes.append(f"layout: {layout} (detected: {why}; set {arg('layout', ...)} to override)")
    if layout != "manifest" and not src.is_dir():
        raise CtcidError(f"layout {layout} needs a folder", src)
    if layout != "manifest" and not files:
        raise CtcidError("empty folder: no image files (.tif, .png, .jpg, ...) found", src)
    rejected: list[Rejection] = []
    args = (src, channels, channel_map, label_map, labels, rejected, files, notes)
    if layout == "deparray":
        order, cells = _plan_deparray(*args)
    elif layout == "manifest":
        order, cells = _plan_manifest(*args)
    else:
        order, cells = _plan_single_file(
            *args, rgb=layout == "class-folders", sample_regex=sample_regex, channel_axis=channel_axis
        )
    if not order:
        raise CtcidError("no channels found", src)
    samples = {c.sample_id for c in cells}
    if len(cells) > 1 and len(samples) == 1:
        notes.append(
            ONE_SAMPLE_NOTE.format(
                sample=next(iter(samples)),
                sample_regex=arg("sample_regex", ...),
                samples_unknown=arg("samples_unknown"),
            )
        )
    root = src.parent if src.is_file() else src
    return IngestPlan(layout, detected, root, order, cells, rejected, channel_axis, notes)
