"""Ingest: decode an export once into a packed, memory-mapped cell dataset.

Cells are decoded in parallel worker processes, in order, in bounded batches, so memory stays
flat however large the export is. Every crop is brought to one square size (centre-padded or
cropped, or resized with its scale recorded), converted to uint16, and given QC flags.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._workers import in_order, optional_pool, worker_count
from ..config import Options, arguments_for, option
from ..errors import CtcidError, InputError, arg
from ._atomic import atomic_dir
from .imread import Image, as_planes, read_image, to_uint16
from .layouts import LAYOUTS, CellSource, IngestPlan, Rejection, plan_ingest
from .store import REJECTED_FILE, DatasetWriter, summarise_block
from .truth import carry_true_masks

__all__ = ["IngestOptions", "IngestResult", "fit_to_size", "ingest"]

FIT_MODES = ("pad", "resize")
ON_ERROR = ("stop", "skip")
_BATCH = 128


def _on_error_option(what: str) -> Any:
    """The ``on_error`` option of a command that reads many ``what`` (files, frames) and may skip bad ones."""
    return option(
        "stop",
        help=f"stop at the first bad {what} (nothing written), or skip it (listed in rejected.csv).",
        choices=ON_ERROR,
    )


@dataclass
class IngestOptions(Options):
    """Every option of ``ctcid ingest`` (also the ``ingest`` section of a YAML config)."""

    layout: str = option(
        "auto", help="Export layout: auto, deparray, manifest, stack or class-folders.", choices=LAYOUTS
    )
    channels: list[str] | None = option(
        None, help="Channels to keep, in order, e.g. BF,DAPI,CK,CD45 (default: every channel found)."
    )
    channel_map: dict[str, str] = option(
        default_factory=dict,
        help="Rename channels: source=name, e.g. FITC=CK,PE=CD45 (class folders: component=name, R=CK).",
    )
    label_map: dict[str, str] = option(
        default_factory=dict, help="Fold labels or folder names into ctc/wbc, e.g. noCTC=wbc,midCTC=ctc."
    )
    labels: str | None = option(None, help="Labels CSV (cell_id, label[, sample_id]); default labels.csv in SRC.")
    size: int | None = option(None, help="Crop size in px (default: the most common size).", ge=8, le=1024)
    fit: str = option(
        "pad",
        help="pad: centre-pad smaller crops (with the border median) and centre-crop larger ones; resize: scale "
        "the longer side to --size (the scale is recorded), then pad.",
        choices=FIT_MODES,
    )
    pixel_size_um: float = option(
        0.64, help="Pixel size of the source images in um (DEPArray: 0.64).", ge=0.01, le=100, flag="--pixel-size"
    )
    channel_axis: str = option(
        "auto", help="For stacks: first (C x H x W), last (H x W x C) or auto.", choices=("auto", "first", "last")
    )
    sample_regex: str | None = option(
        None, help="Regex whose first group in a file name is the sample (when samples are not folders)."
    )
    on_error: str = _on_error_option("file")
    workers: int | None = option(
        None, help="Decoding processes (default: every available core; 0 decodes in this process).", ge=0
    )


@dataclass
class IngestResult:
    """What ``ingest`` did: the dataset folder, its header, the layout and the rejected cells."""

    path: Path
    header: dict[str, Any]
    plan_notes: list[str]
    rejected: list[Rejection]


# --------------------------------------------------------------------------------------------- pixels


def _single_plane(image: Image, path: str) -> np.ndarray:
    planes = as_planes(image, path)
    if len(planes) > 1 and not (image.axes == "YXS" and (planes == planes[:1]).all()):
        raise InputError(f"wrong channel count: expected one channel per file, found {len(planes)}", path)
    return planes[0]


def _cached_plane(
    decoded: dict[str, Image], path: str, plane: int | None, axis: str, gray_planes: int
) -> tuple[np.ndarray | None, int]:
    """Plane ``plane`` of the image file ``path`` (decoded once per ``decoded`` cache) or, for ``None``, its one
    plane, and the number of planes of the file; ``None`` for a plane the file does not have. A single-plane
    file with ``plane`` given counts as ``gray_planes`` copies of that plane."""
    if path not in decoded:
        decoded[path] = read_image(path)
    image = decoded[path]
    if plane is None:
        return _single_plane(image, path), 1
    if image.data.ndim == 3:
        stack = as_planes(image, path, axis)
    else:
        stack = np.repeat(image.data[None], gray_planes, 0)
    return (stack[plane] if plane < len(stack) else None), len(stack)


def fit_to_size(planes: np.ndarray, size: int, mode: str = "pad") -> tuple[np.ndarray, float, list[str]]:
    """Bring a ``[C, H, W]`` uint16 crop to ``[C, size, size]`` around its centre.

    Returns the crop, the scale applied (1.0 unless resized) and QC flags
    (``padded``, ``cropped``, ``resized``). Padding uses each channel's border median, so the
    background continues instead of a black frame.

    Examples
    --------
    >>> out, scale, flags = fit_to_size(np.ones((1, 3, 5), np.uint16), 4)
    >>> out.shape, scale, flags
    ((1, 4, 4), 1.0, ['cropped', 'padded'])
    """
    c, h, w = planes.shape
    flags: list[str] = []
    scale = 1.0
    if mode == "resize" and max(h, w) != size:
        from skimage.transform import resize

        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        planes = resize(
            planes.astype(np.float32),
            (c, nh, nw),
            order=1,
            preserve_range=True,
            anti_aliasing=scale < 1,
            mode="edge",
        )
        planes = np.clip(np.rint(planes), 0, 65535).astype(np.uint16)
        h, w = nh, nw
        flags.append("resized")
    if h > size or w > size:
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        planes = planes[:, top : top + min(h, size), left : left + min(w, size)]
        h, w = planes.shape[1:]
        flags.append("cropped")
    if h < size or w < size:
        border = np.concatenate([planes[:, 0], planes[:, -1], planes[:, :, 0], planes[:, :, -1]], axis=1)
        fill = np.median(border, axis=1).astype(np.uint16)
        out = np.empty((c, size, size), dtype=np.uint16)
        out[:] = fill[:, None, None]
        top, left = (size - h) // 2, (size - w) // 2
        out[:, top : top + h, left : left + w] = planes
        planes = out
        flags.append("padded")
    return np.ascontiguousarray(planes), scale, flags


def _load_cell(cell: CellSource, channels: list[str], size: int, fit: str, axis: str) -> tuple[np.ndarray, dict]:
    decoded: dict[str, Image] = {}
    planes, dtypes, rescaled = [], set(), False
    for ch in channels:
        path, plane = cell.files[ch]
        data, count = _cached_plane(decoded, path, plane, axis, gray_planes=3)
        if data is None:
            raise InputError(
                f"wrong channel count: channel {ch} is plane {plane + 1} but the file has {count}", path
            )
        dtypes.add(str(data.dtype))
        data, was_rescaled = to_uint16(data, path)
        rescaled |= was_rescaled
        planes.append(data)
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        sizes = ", ".join(f"{ch} {p.shape[0]}x{p.shape[1]}" for ch, p in zip(channels, planes, strict=True))
        raise InputError(f"mismatched channel sizes ({sizes})", cell.files[channels[0]][0])
    stack = np.stack(planes)
    h, w = stack.shape[1:]
    out, scale, flags = fit_to_size(stack, size, fit)
    if rescaled:
        flags.append("intensity_rescaled")
    flat = stack.reshape(len(channels), -1)
    for i, ch in enumerate(channels):
        if flat[i].min() == flat[i].max():
            flags.append(f"blank:{ch}")
        elif np.count_nonzero(flat[i] == 65535) > 0.01 * flat.shape[1]:
            flags.append(f"saturated:{ch}")
    meta = {
        "orig_height": h,
        "orig_width": w,
        "scale": scale,
        "source_dtype": "/".join(sorted(dtypes)),
        "qc_flags": ";".join(sorted(flags)),
    }
    return out, meta


def _decode_batch(
    cells: list[CellSource], channels: list[str], size: int, fit: str, axis: str
) -> tuple[np.ndarray, list[tuple[int, dict]], list[tuple[int, str, str]], tuple[np.ndarray, bytes]]:
    """Worker: decode cells; return good pixels, (position, meta) per good cell, (position, file, why) per bad
    cell, and the block's histogram and digest."""
    out = np.empty((len(cells), len(channels), size, size), dtype=np.uint16)
    good: list[tuple[int, dict]] = []
    errors: list[tuple[int, str, str]] = []
    for i, cell in enumerate(cells):
        try:
            pixels, meta = _load_cell(cell, channels, size, fit, axis)
        except InputError as exc:
            errors.append((i, exc.path or "", exc.reason))
            continue
        out[len(good)] = pixels
        good.append((i, meta))
    out = out[: len(good)]
    return out, good, errors, summarise_block(out)


def _default_size(plan: IngestPlan) -> int:
    sides = []
    for cell in plan.cells[:32]:
        path, _ = cell.files[plan.channels[0]]
        try:
            image = read_image(path)
        except InputError:
            continue
        h, w = image.data.shape[:2] if image.axes == "YXS" else image.data.shape[-2:]
        sides.append(max(h, w))
    if not sides:
        raise CtcidError(
            f"cannot find a crop size: the first cells cannot be read; pass {arg('size', ...)}", plan.root
        )
    return collections.Counter(sides).most_common(1)[0][0]


def _rows(cells: list[CellSource], good: list[tuple[int, dict]], channels: list[str], root: Path) -> pd.DataFrame:
    prefix = str(root) + os.sep

    def rel(path: str) -> str:
        return path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, root)

    records = []
    for pos, meta in good:
        cell = cells[pos]
        rec: dict[str, Any] = {"cell_id": cell.cell_id, "sample_id": cell.sample_id, "label": cell.label}
        for ch in channels:
            path, plane = cell.files[ch]
            rec[f"src_{ch}"] = rel(path) if plane is None else f"{rel(path)}#{plane}"
        rec.update(meta)
        rec.update({k: v for k, v in cell.extra.items() if k not in rec})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def ingest(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> IngestResult:
    """Read an export and write a cell dataset folder at ``out``.

    Parameters
    ----------
    src
        Export folder or manifest CSV.
    out
        Dataset folder to create; it appears only when complete.
    options
        See :class:`IngestOptions`.
    overwrite
        Replace an existing ``out``.
    progress
        Called as ``progress(done, total)`` after every batch.
    log
        Called with one-line notes (detected layout, crop size, ...).

    Raises
    ------
    CtcidError
        Bad options, an unreadable source, or (with ``on_error="stop"``) the first bad cell.
    """
    opts = options or IngestOptions()
    opts.validate()
    say = log or (lambda _msg: None)
    plan = plan_ingest(src, **arguments_for(plan_ingest, opts))
    for note in plan.notes:
        say(note)
    rejected = list(plan.rejected)
    if rejected and opts.on_error == "stop":
        raise rejected[0].as_error()
    if not plan.cells:
        raise CtcidError("no cells to ingest" + (f" ({len(rejected)} rejected)" if rejected else ""), src)
    size = opts.size or _default_size(plan)
    if not opts.size:
        say(f"crop size: {size} px (most common in the first cells; set {arg('size', ...)} to change)")
    say(
        f"channels: {', '.join(plan.channels)}; {len(plan.cells)} cells in "
        f"{len({c.sample_id for c in plan.cells})} samples"
    )
    with atomic_dir(out, overwrite) as tmp:
        writer = DatasetWriter(tmp, plan.channels, size, opts.pixel_size_um)
        _decode_all(plan, size, opts, writer, rejected, progress)
        if writer.n == 0:
            raise CtcidError(
                f"no cells could be read ({len(rejected)} rejected; first: {rejected[0].reason})", src
            )
        if rejected:
            pd.DataFrame([asdict(r) for r in rejected]).to_csv(tmp / REJECTED_FILE, index=False)
        info = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": {"root": str(Path(plan.root).resolve()), "layout": plan.layout, "detected": plan.detected},
            "ingest": {**asdict(opts), "size": size},
            "rejected": len(rejected),
        }
        header = writer.finish(info)
        carry_true_masks(src, tmp, size, resized=opts.fit == "resize", log=say)
    if rejected:
        say(f"{len(rejected)} cell(s) rejected; see {Path(out) / REJECTED_FILE}")
    return IngestResult(Path(out), header, plan.notes, rejected)


def _decode_all(
    plan: IngestPlan,
    size: int,
    opts: IngestOptions,
    writer: DatasetWriter,
    rejected: list[Rejection],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Decode the plan's cells in batches (in worker processes for large exports) and append them to ``writer``
    in order; bad cells stop the ingest or are added to ``rejected``, as ``opts.on_error`` says."""
    n = len(plan.cells)
    workers = worker_count(opts.workers, n, 2 * _BATCH)
    batches = [plan.cells[i : i + _BATCH] for i in range(0, n, _BATCH)]
    args = (plan.channels, size, opts.fit, plan.channel_axis)
    with optional_pool(workers, on_error=[writer.abort]) as pool:
        done = 0
        for index, (pixels, good, errors, summary) in in_order(
            pool, _decode_batch, batches, max(2, 3 * workers), *args
        ):
            batch = batches[index]
            for pos, path, reason in errors:
                cell = batch[pos]
                rej = Rejection(cell.sample_id, cell.cell_id, path, reason)
                if opts.on_error == "stop":
                    raise rej.as_error()
                rejected.append(rej)
            if good:
                writer.append(pixels, _rows(batch, good, plan.channels, plan.root), summary)
            done += len(batch)
            if progress:
                progress(done, n)
