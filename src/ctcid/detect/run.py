"""``detect``: find every cell in a slide's frames and write one crop per cell as a ctcid dataset.

Frames are read and searched in worker processes, a few at a time and in order, so memory stays flat however
many frames a slide has; the crops, their table rows and their masks stream into the dataset as they come.

The dataset is an ordinary one (see :mod:`ctcid.io.store`), so ``features``, ``predict``, ``report`` and
``review`` read it unchanged. Beside ``cells.parquet``, ``pixels.u16`` and ``dataset.json`` it holds

``detect/masks.npy``
    uint8 ``[cells, size, size]``, in the order of the cell table: each event's own mask in its crop, 0
    background, 1 cytoplasm, 2 nucleus (other events in the crop are 0).
``detect/frames.csv``
    One row per frame read: ``sample_id``, ``frame``, ``height``, ``width``, ``events``, and the frame's
    ``grid_x``/``grid_y`` on the slide when the grid is known.
``rejected.csv``
    Frames set aside by ``--on-error skip``, with the reason (``cell_id`` names the frame).

Each event's row carries ``frame`` (the frame's number as the export numbers it), ``x_px`` and ``y_px`` (column
and row of its centroid in that frame), ``slide_x_um`` and ``slide_y_um`` (on the slide, from the frame grid,
frames abutting) when the grid is known, ``area_um2``, ``nucleus_area_um2`` and its flags in ``qc_flags``. The
crop of an event at ``(x_px, y_px)`` is rows ``round(y_px) - size // 2`` on and columns ``round(x_px) - size //
2`` on of the frame, ``size`` of each; where that leaves the frame it is padded with the frame's median and
flagged ``padded``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._workers import in_order, optional_pool, worker_count
from ..config import ConfigError, Options, arguments_for, option
from ..errors import CtcidError, InputError, arg
from ..io import atomic_dir
from ..io.imread import to_uint16
from ..io.ingest import _cached_plane, _on_error_option
from ..io.layouts import Rejection
from ..io.store import REJECTED_FILE, DatasetWriter, summarise_block
from ._celltracks import EVENT_MARGIN_PX, read_celltracks_frame
from .find import BACKENDS, FindConfig, check_backend, find_cells
from .layouts import FRAME_LAYOUTS, FramePlan, FrameSource, parse_channels, parse_grid, plan_frames

__all__ = ["DetectOptions", "DetectResult", "crop_events", "detect", "read_frame"]

MASKS_FILE = "masks.npy"
FRAMES_FILE = "frames.csv"
DETECT_DIR = "detect"
#: A frame with more than this share of a channel's pixels at full scale is refused as saturated.
SATURATED_FRACTION = 0.1


@dataclass
class DetectOptions(Options):
    """Every option of ``ctcid detect`` (also the ``detect`` section of a YAML config)."""

    layout: str = option("auto", help="Frame layout: auto, tiles, multipage or celltracks.", choices=FRAME_LAYOUTS)
    channels: list[str] | None = option(
        None,
        help="Channel of each block of tiles or each page, in order, '-' skipping one (default from frames.json "
        "or, for CellTracks, DAPI,FITC,CK,CD45).",
        parse=parse_channels,
    )
    tiles_per_channel: int | None = option(
        None, help="Tiles in each channel's block (default: the tile count divided by the channels).", ge=1
    )
    pattern: str | None = option(
        None, help="Tiles named by frame and channel, e.g. 'Tile{frame}_{channel}.tif', instead of blocks."
    )
    size: int = option(80, help="Crop size in px, centred on each cell.", ge=8, le=1024)
    pixel_size_um: float | None = option(
        None, help="Pixel size in um (default from frames.json, else 0.64).", ge=0.01, le=100, flag="--pixel-size"
    )
    sample_id: str | None = option(None, help="Sample id of one slide (default: its folder name).")
    grid: tuple[int, int] | None = option(
        None,
        help="Frames on the slide as COLUMNSxROWS, for slide coordinates (CellTracks: from its XML).",
        parse=parse_grid,
    )
    serpentine: bool | None = option(None, help="Frames run back and forth along the rows.")
    nucleus_channel: str = option("DAPI", help="The nuclear channel.")
    cell_channels: list[str] = option(
        default_factory=lambda: ["CK", "CD45"], help="Channels marking a cell's cytoplasm or membrane."
    )
    min_snr: float = option(6.0, help="Detection threshold in noise units.", gt=0)
    backend: str = option("classical", help="classical, or cellpose when installed locally.", choices=BACKENDS)
    cellpose_model: str = option("cpsam", help="Cellpose weights: a name in its local model folder, or a path.")
    on_error: str = _on_error_option("frame")
    workers: int | None = option(
        None, help="Processes (default: every available core; 0 works in this process).", ge=0
    )

    def __check__(self) -> None:
        if not self.cell_channels:
            raise ConfigError("cell_channels", "needs at least one channel", "--cell-channels")
        if self.grid is not None and min(self.grid) < 1:
            raise ConfigError("grid", f"must be COLUMNSxROWS, two whole numbers >= 1, got {self.grid!r}", "--grid")
        if self.sample_id is not None and not str(self.sample_id).strip():
            raise ConfigError("sample_id", "must not be empty", "--sample-id")

    def find_config(self) -> FindConfig:
        """The :class:`~ctcid.detect.find.FindConfig` these options ask for."""
        return FindConfig(
            nucleus_channel=self.nucleus_channel,
            cell_channels=list(self.cell_channels),
            min_snr=self.min_snr,
            backend=self.backend,
            cellpose_model=self.cellpose_model,
        )


@dataclass
class DetectResult:
    """What ``detect`` did: the dataset folder, its header, the plan's notes and the frames rejected."""

    path: Path
    header: dict[str, Any]
    notes: list[str]
    rejected: list[Rejection]
    frames: int


# --------------------------------------------------------------------------------------------- reading


def read_frame(source: FrameSource, channels: list[str]) -> tuple[np.ndarray, str]:
    """The pixels of one frame, uint16 ``[C, H, W]`` in ``channels`` order, and the source pixel type.

    Raises :class:`~ctcid.errors.InputError` for a frame that cannot be used: unreadable, planes of different
    sizes, a channel that is constant (an empty frame) or saturated over :data:`SATURATED_FRACTION`.
    """
    planes, dtypes = [], set()
    cache: dict[str, Any] = {}
    for ch in channels:
        path, page = source.files[ch]
        if source.celltracks:
            if path not in cache:
                cache[path] = read_celltracks_frame(path)
            stack = cache[path]
            if page >= len(stack):
                raise InputError(f"channel {ch} is page {page + 1} but the frame has {len(stack)} pages", path)
            data = np.clip(np.rint(stack[page]), 0, 65535).astype(np.uint16)
            dtypes.add("celltracks")
        else:
            data, count = _cached_plane(cache, path, page, "first", gray_planes=1)
            if data is None:
                raise InputError(f"channel {ch} is page {page + 1} but the frame has {count} pages", path)
            dtypes.add(str(data.dtype))
            data, _ = to_uint16(data, path)
        planes.append(data)
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        sizes = ", ".join(f"{ch} {p.shape[0]}x{p.shape[1]}" for ch, p in zip(channels, planes, strict=True))
        raise InputError(
            f"frame {source.frame}: channels of different sizes ({sizes})", source.files[channels[0]][0]
        )
    stack = np.stack(planes)
    for ch, plane in zip(channels, stack, strict=True):
        lo, hi = int(plane.min()), int(plane.max())
        where = source.files[ch][0]
        if lo == hi:
            raise InputError(f"empty frame {source.frame}: channel {ch} is constant ({lo})", where)
        full = np.count_nonzero(plane == 65535)
        if full > SATURATED_FRACTION * plane.size:
            raise InputError(
                f"saturated frame {source.frame}: {100 * full / plane.size:.0f}% of channel {ch} at full scale",
                where,
            )
    return stack, "/".join(sorted(dtypes))


def crop_events(
    frame: np.ndarray, labels: np.ndarray, nucleus: np.ndarray, xy: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops ``[n, C, size, size]`` of ``frame [C, H, W]`` centred on ``xy [n, 2]`` (column, row), each event's
    mask ``[n, size, size]`` (1 cytoplasm, 2 nucleus of label ``k + 1`` only) and whether a crop was padded.

    The crop of an event at ``(x, y)`` is ``frame[:, r:r + size, c:c + size]`` with ``r = round(y) - size // 2``,
    ``c = round(x) - size // 2``; outside the frame it holds the frame's per-channel median.

    Examples
    --------
    >>> frame = np.arange(2 * 6 * 8, dtype=np.uint16).reshape(2, 6, 8)
    >>> labels = np.zeros((6, 8), np.int32); labels[2:4, 3:5] = 1
    >>> crops, masks, padded = crop_events(frame, labels, labels > 0, np.array([[3.5, 2.5]]), 4)
    >>> bool((crops[0] == frame[:, 0:4, 2:6]).all()), masks[0].tolist()[2], padded.tolist()
    (True, [0, 2, 2, 0], [False])
    """
    c, h, w = frame.shape
    n = len(xy)
    crops = np.empty((n, c, size, size), np.uint16)
    masks = np.zeros((n, size, size), np.uint8)
    padded = np.zeros(n, bool)
    fill = np.median(frame.reshape(c, -1)[:, :: max(1, h * w // 65536)], axis=1).astype(np.uint16)
    half = size // 2
    tops = np.round(xy[:, 1]).astype(np.int64) - half
    lefts = np.round(xy[:, 0]).astype(np.int64) - half
    for k in range(n):
        t, l = int(tops[k]), int(lefts[k])
        y0, x0, y1, x1 = max(t, 0), max(l, 0), min(t + size, h), min(l + size, w)
        if y0 > t or x0 > l or y1 < t + size or x1 < l + size:
            crops[k] = fill[:, None, None]
            padded[k] = True
        crops[k, :, y0 - t : y1 - t, x0 - l : x1 - l] = frame[:, y0:y1, x0:x1]
        own = labels[y0:y1, x0:x1] == k + 1
        m = masks[k, y0 - t : y1 - t, x0 - l : x1 - l]
        m[own] = 1
        m[own & nucleus[y0:y1, x0:x1]] = 2
    return crops, masks, padded


# --------------------------------------------------------------------------------------------- workers


@dataclass
class _Job:
    channels: list[str]
    size: int
    pixel_size_um: float
    find: dict[str, Any]
    root: str


def _rel(path: str, root: str) -> str:
    prefix = root + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, root)


def _priors(source: FrameSource, events: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """CellTracks event number and selection of the detected event inside each pre-selected event's box."""
    number: list[Any] = [None] * len(events)
    selected: list[Any] = [None] * len(events)
    if not source.priors or events.empty:
        return number, selected
    x, y = events["x_px"].to_numpy(), events["y_px"].to_numpy()
    for p in source.priors:
        m = EVENT_MARGIN_PX
        inside = (x >= p.x0 - m) & (x <= p.x1 + m) & (y >= p.y0 - m) & (y <= p.y1 + m)
        if inside.any():
            cand = np.flatnonzero(inside)
            k = int(cand[np.argmin(np.hypot(x[cand] - (p.x0 + p.x1) / 2, y[cand] - (p.y0 + p.y1) / 2))])
            if number[k] is None:
                number[k], selected[k] = p.eventnum, p.numselected
    return number, selected


def _detect_frame(source: FrameSource, job: _Job) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, tuple[int, int]]:
    frame, dtype = read_frame(source, job.channels)
    found = find_cells(frame, job.channels, job.pixel_size_um, FindConfig(**job.find))
    ev = found.events
    xy = ev[["x_px", "y_px"]].to_numpy()
    crops, masks, padded = crop_events(frame, found.labels, found.nucleus, xy, job.size)
    h, w = frame.shape[1:]
    rows = pd.DataFrame(
        {
            "cell_id": [f"F{source.frame:06d}_E{k:04d}" for k in range(1, len(ev) + 1)],
            "sample_id": source.sample_id,
            "label": None,
        }
    )
    for ch in job.channels:
        path, page = source.files[ch]
        rows[f"src_{ch}"] = _rel(path, job.root) + ("" if page is None else f"#{page}")
    rows["frame"] = np.int64(source.frame)
    rows["x_px"] = ev["x_px"].round(2).to_numpy()
    rows["y_px"] = ev["y_px"].round(2).to_numpy()
    if source.grid_xy is not None:
        gx, gy = source.grid_xy
        rows["slide_x_um"] = ((gx * w + ev["x_px"]) * job.pixel_size_um).round(2).to_numpy()
        rows["slide_y_um"] = ((gy * h + ev["y_px"]) * job.pixel_size_um).round(2).to_numpy()
    rows["area_um2"] = ev["area_um2"].round(2).to_numpy()
    rows["nucleus_area_um2"] = ev["nucleus_area_um2"].round(2).to_numpy()
    rows["orig_height"] = job.size
    rows["orig_width"] = job.size
    rows["scale"] = 1.0
    rows["source_dtype"] = dtype
    rows["qc_flags"] = [
        ";".join(sorted({*filter(None, f.split(";")), *(["padded"] if p else [])}))
        for f, p in zip(ev["flags"], padded, strict=True)
    ]
    if source.celltracks:
        rows["celltracks_event"], rows["celltracks_selected"] = _priors(source, ev)
    return crops, masks, rows, (h, w)


def _detect_batch(sources: list[FrameSource], job: _Job) -> list[tuple[Any, ...]]:
    """Worker: per frame, ``("ok", crops, masks, rows, summary, shape)`` or ``("error", path, reason)``."""
    out: list[tuple[Any, ...]] = []
    for source in sources:
        try:
            crops, masks, rows, shape = _detect_frame(source, job)
        except InputError as exc:
            out.append(("error", exc.path or "", exc.reason))
            continue
        out.append(("ok", crops, masks, rows, summarise_block(crops) if len(crops) else None, shape))
    return out


# --------------------------------------------------------------------------------------------- driver


def _frame_error(rej: Rejection) -> InputError:
    return InputError(f"{rej.reason} (slide {rej.sample_id})", rej.file)


class _MaskWriter:
    """Stream masks to a raw file; at the end, write them as one ``.npy`` (uint8 ``[n, size, size]``)."""

    def __init__(self, folder: Path, size: int):
        self.folder = folder
        self.size = size
        self.raw = folder / (MASKS_FILE + ".part")
        self._fh = open(self.raw, "wb")
        self.n = 0

    def append(self, masks: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(masks, np.uint8).tobytes())
        self.n += len(masks)

    def finish(self) -> None:
        self._fh.close()
        header = {"descr": "|u1", "fortran_order": False, "shape": (self.n, self.size, self.size)}
        with open(self.folder / MASKS_FILE, "wb") as out, open(self.raw, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, 1 << 22)
        self.raw.unlink()

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def detect(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: DetectOptions | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> DetectResult:
    """Find every cell in the frames of ``src`` and write a dataset of crops at ``out``.

    Parameters
    ----------
    src
        A slide folder (tiles, multipage TIFFs or a CellTracks cartridge) or a folder of slide folders.
    out
        Dataset folder to create; it appears only when complete.
    options
        See :class:`DetectOptions`.
    overwrite
        Replace an existing ``out``.
    progress
        Called as ``progress(frames_done, frames_total)`` after every batch.
    log
        Called with one-line notes (layout found, channels, frames).

    Raises
    ------
    CtcidError
        Bad options, a folder that is not a scan, or (with ``on_error="stop"``) the first bad frame.
    """
    opts = options or DetectOptions()
    opts.validate()
    say = log or (lambda _msg: None)
    find_cfg = opts.find_config()
    check_backend(find_cfg)
    plan = plan_frames(src, **arguments_for(plan_frames, opts, grid=tuple(opts.grid) if opts.grid else None))
    for note in plan.notes:
        say(note)
    if find_cfg.nucleus_channel not in plan.channels:
        raise CtcidError(
            f"the nuclear channel {find_cfg.nucleus_channel} is not among the channels "
            f"({', '.join(plan.channels)}); name them with {arg('channels', ...)} or set "
            f"{arg('nucleus_channel', ...)}",
            src,
        )
    rejected = list(plan.rejected)
    if rejected and opts.on_error == "stop":
        raise _frame_error(rejected[0])
    if not plan.frames:
        raise CtcidError("no frames to read" + (f" ({len(rejected)} rejected)" if rejected else ""), src)
    say(
        f"channels: {', '.join(plan.channels)}; {len(plan.frames)} frames of {len(plan.slides)} slide(s); "
        f"pixel size {plan.pixel_size_um:g} um"
    )
    return _run(plan, out, opts, find_cfg, rejected, overwrite, progress, say)


def _run(
    plan: FramePlan,
    out: str | os.PathLike[str],
    opts: DetectOptions,
    find_cfg: FindConfig,
    rejected: list[Rejection],
    overwrite: bool,
    progress: Callable[[int, int], None] | None,
    say: Callable[[str], None],
) -> DetectResult:
    """Detect the cells of every frame of ``plan`` and write the dataset, its masks and its frame table."""
    job = _Job(plan.channels, opts.size, plan.pixel_size_um, find_cfg.to_dict(), str(plan.root.resolve()))
    frames = [
        FrameSource(
            f.sample_id,
            f.frame,
            {c: (str(Path(p).resolve()), pg) for c, (p, pg) in f.files.items()},
            f.grid_xy,
            f.priors,
            f.celltracks,
        )
        for f in plan.frames
    ]
    with atomic_dir(out, overwrite) as tmp:
        writer = DatasetWriter(tmp, plan.channels, opts.size, plan.pixel_size_um)
        (tmp / DETECT_DIR).mkdir()
        masks_out = _MaskWriter(tmp / DETECT_DIR, opts.size)
        frame_rows = _detect_all(frames, job, opts, writer, masks_out, rejected, progress)
        if not frame_rows:
            raise CtcidError(
                f"no frame could be read ({len(rejected)} rejected; first: {rejected[0].reason})", plan.root
            )
        if writer.n == 0:
            raise CtcidError(f"no cells found in the {len(frame_rows)} frame(s) read", plan.root)
        masks_out.finish()
        pd.DataFrame(frame_rows).to_csv(tmp / DETECT_DIR / FRAMES_FILE, index=False)
        if rejected:
            pd.DataFrame([asdict(r) for r in rejected]).to_csv(tmp / REJECTED_FILE, index=False)
        header = writer.finish(_header_info(plan, opts, find_cfg, len(frame_rows), len(rejected)))
    if rejected:
        say(f"{len(rejected)} frame(s) rejected; see {Path(out) / REJECTED_FILE}")
    return DetectResult(Path(out), header, plan.notes, rejected, len(frame_rows))


def _detect_all(
    frames: list[FrameSource],
    job: _Job,
    opts: DetectOptions,
    writer: DatasetWriter,
    masks_out: _MaskWriter,
    rejected: list[Rejection],
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """Detect frame after frame (in worker processes when there are several) and stream the crops, rows and
    masks into the writers in frame order; return one row per frame read. A bad frame stops the run or is added
    to ``rejected``, as ``opts.on_error`` says."""
    n = len(frames)
    workers = worker_count(opts.workers, n, 2)
    shapes: dict[str, tuple[int, int]] = {}
    frame_rows: list[dict[str, Any]] = []
    with optional_pool(workers, on_error=[writer.abort, masks_out.abort]) as pool:
        singles = [[source] for source in frames]
        for index, (result,) in in_order(pool, _detect_batch, singles, max(2, 2 * workers), job):
            source = frames[index]
            result = _check_frame_size(result, source, shapes, job.channels[0])
            if result[0] == "error":
                rej = Rejection(source.sample_id, f"frame {source.frame}", result[1], result[2])
                if opts.on_error == "stop":
                    raise _frame_error(rej)
                rejected.append(rej)
            else:
                frame_rows.append(_store_frame(result, source, writer, masks_out))
            if progress:
                progress(index + 1, n)
    return frame_rows


def _check_frame_size(
    result: tuple[Any, ...], source: FrameSource, shapes: dict[str, tuple[int, int]], channel: str
) -> tuple[Any, ...]:
    """A frame's result, or an ``("error", path, reason)`` when it differs in size from its slide's first frame
    (recorded in ``shapes``)."""
    if result[0] != "ok":
        return result
    shape = result[-1]
    first = shapes.setdefault(source.sample_id, shape)
    if shape == first:
        return result
    return (
        "error",
        source.files[channel][0],
        f"frame {source.frame} is {shape[0]}x{shape[1]} px but the slide's frames are {first[0]}x{first[1]}",
    )


def _store_frame(
    result: tuple[Any, ...], source: FrameSource, writer: DatasetWriter, masks_out: _MaskWriter
) -> dict[str, Any]:
    """Append a frame's crops, rows and masks to the writers; return its row of the frame table."""
    _, crops, masks, rows, summary, shape = result
    if len(rows):
        writer.append(crops, rows, summary)
        masks_out.append(masks)
    row = {
        "sample_id": source.sample_id,
        "frame": source.frame,
        "height": shape[0],
        "width": shape[1],
        "events": len(rows),
    }
    if source.grid_xy is not None:
        row["grid_x"], row["grid_y"] = source.grid_xy
    return row


def _header_info(
    plan: FramePlan, opts: DetectOptions, find_cfg: FindConfig, frames: int, rejected: int
) -> dict[str, Any]:
    """What ``dataset.json`` records about the detection, besides what every dataset records."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"root": str(plan.root.resolve()), "layout": plan.layout, "detected": plan.detected},
        "detect": {
            **asdict(opts),
            "pixel_size_um": plan.pixel_size_um,
            "channels": plan.channels,
            "blocks_or_pages": opts.channels,
        },
        "find": find_cfg.to_dict(),
        "frames": frames,
        "grid": plan.grid,
        "masks": f"{DETECT_DIR}/{MASKS_FILE}",
        "rejected": rejected,
    }
