"""Find the frames of a slide or cartridge scan: one plan per layout, before any pixel is decoded.

A *frame* is one camera field: a multi-channel image holding many cells. A layout turns a folder into a list of
:class:`FrameSource`, each naming the slide (sample), the frame's number as the export numbers it, and for every
channel the file (and page) that holds it. Problems found here (a missing channel block, a tile count that does
not divide by the channels, a frame missing a tile) are reported per frame where they concern one frame, so
that ``--on-error skip`` can set them aside; problems with the whole slide stop it.

Layouts
-------
``tiles``
    Numbered single-channel images with the channels in consecutive blocks, as high-definition single cell
    assay (HD-SCA) slide scans are exported: ``Tile000001.jpg`` ... one block of ``tiles_per_channel`` tiles
    per channel, in the order of ``channels`` (``-`` skips a block). Or, with ``pattern``
    (``Tile{frame}_{channel}.tif``), the channel named in the file name.
``multipage``
    One multipage TIFF per frame, pages mapped to ``channels`` in order (``-`` skips a page).
``celltracks``
    A CellSearch / CellTracks cartridge folder as ACCEPT reads it (see :mod:`ctcid.detect._celltracks`).

A folder holding images is one slide (its name is the sample id); a folder holding only sub-folders is one slide
per sub-folder. A ``frames.json`` at the top (written by ``ctcid synth --frames``) supplies the options.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..errors import CtcidError, arg
from ..io._json import read_versioned_json
from ..io.imread import as_planes, read_image
from ..io.layouts import IMAGE_EXTENSIONS, Rejection
from ._celltracks import (
    CELLTRACKS_CHANNELS,
    CELLTRACKS_PIXEL_UM,
    PriorEvent,
    find_image_dir,
    grid_position,
    is_celltracks_xml,
    read_cartridge_xml,
)

__all__ = [
    "FRAME_LAYOUTS",
    "SKIP",
    "SPEC_FILE",
    "FramePlan",
    "FrameSource",
    "detect_frame_layout",
    "parse_channels",
    "parse_grid",
    "plan_frames",
    "read_spec",
]

#: Layout names accepted by ``--layout``.
FRAME_LAYOUTS = ("auto", "tiles", "multipage", "celltracks")
#: The channel name that skips a block of tiles or a page.
SKIP = "-"
#: The options file a synthetic slide scan carries (written by :mod:`ctcid.synth.frames`).
SPEC_FILE = "frames.json"
SPEC_FORMAT = "ctcid-frames"
SPEC_VERSION = 1
_CANONICAL = ("DAPI", "CK", "CD45")


@dataclass
class FrameSource:
    """One frame: its slide, its number, ``files`` (channel -> (path, page or None)) and where it lies.

    ``grid_xy`` is the frame's (column, row) on the slide when the frame grid is known; ``priors`` the events a
    CellTracks instrument pre-selected in it; ``celltracks`` whether pages carry CellTracks scaling tags.
    """

    sample_id: str
    frame: int
    files: dict[str, tuple[str, int | None]]
    grid_xy: tuple[int, int] | None = None
    priors: tuple[PriorEvent, ...] = ()
    celltracks: bool = False


@dataclass
class FramePlan:
    """The frames to read, their channels, the slides, and what was set aside already."""

    layout: str
    detected: bool
    root: Path
    channels: list[str]
    frames: list[FrameSource]
    rejected: list[Rejection]
    pixel_size_um: float
    slides: list[str]
    notes: list[str] = field(default_factory=list)
    grid: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------- options


def parse_channels(text: str | None, option: str = "--channels") -> list[str] | None:
    """Parse ``DAPI,CK,-,CD45`` into a list; ``-`` (skip a block or page) may repeat, names may not.

    Examples
    --------
    >>> parse_channels("DAPI,CK,CD45,-,FITC")
    ['DAPI', 'CK', 'CD45', '-', 'FITC']
    """
    if text is None:
        return None
    items = [p.strip() for p in text.split(",")]
    if not items or any(not p for p in items):
        raise CtcidError(f"{option} expects channel names separated by commas, got {text!r}")
    names = [p for p in items if p != SKIP]
    if not names:
        raise CtcidError(f"{option} needs at least one channel that is not '{SKIP}'")
    dupes = sorted(n for n, k in Counter(names).items() if k > 1)
    if dupes:
        raise CtcidError(f"{option} names a channel twice: {', '.join(dupes)}")
    return items


def parse_grid(text: str | None) -> tuple[int, int] | None:
    """Parse ``COLSxROWS`` (``48x48``) into ``(48, 48)``.

    >>> parse_grid("48x40")
    (48, 40)
    """
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError("grid", f"expects COLUMNSxROWS, e.g. 48x48, got {text!r}", "--grid")
    return int(m.group(1)), int(m.group(2))


def read_spec(root: Path) -> dict[str, Any] | None:
    """The ``frames.json`` options of a synthetic slide scan, or ``None`` when absent."""
    path = root / SPEC_FILE
    if not path.is_file():
        return None
    return read_versioned_json(path, SPEC_FORMAT, SPEC_VERSION, "frames spec")


# --------------------------------------------------------------------------------------------- discovery


def _images(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise CtcidError(f"cannot be read ({exc.strerror or exc})", folder) from None
    return [
        Path(e.path)
        for e in entries
        if not e.name.startswith(".") and e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
    ]


def _xmls(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.xml") if not p.name.startswith(".") and p.is_file())


def _holds_frames(folder: Path) -> bool:
    return bool(_images(folder)) or any(is_celltracks_xml(p) for p in _xmls(folder))


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def _descend(folder: Path, holds: Callable[[Path], object]) -> Path | None:
    """``folder``, or the folder down its chain of single sub-folders (10 deep at most), for which ``holds`` is
    true; ``None`` when there is none."""
    current = folder
    for _ in range(10):
        if holds(current):
            return current
        subdirs = _subfolders(current)
        if len(subdirs) != 1:
            return None
        current = subdirs[0]
    return None


def _slide_folder(folder: Path) -> Path | None:
    """``folder`` when it or the first single sub-folder below it holds frames."""
    return None if _descend(folder, _holds_frames) is None else folder


def find_slides(root: Path) -> list[tuple[str, Path]]:
    """``(sample_id, folder)`` of each slide under ``root``: ``root`` itself, or each of its sub-folders."""
    if not root.is_dir():
        raise CtcidError("no such folder" if not root.exists() else "is not a folder of frames", root)
    if _slide_folder(root) is not None:
        return [(root.resolve().name, root)]
    slides = []
    for sub in _subfolders(root):
        if _slide_folder(sub) is not None:
            slides.append((sub.name, sub))
    if not slides:
        raise CtcidError("no frames found: no image files (.tif, .jpg, .png, ...) or CellTracks XML", root)
    return slides


def _descend_images(folder: Path) -> Path:
    found = _descend(folder, _images)
    if found is None:
        raise CtcidError("no image files found in this slide folder", folder)
    return found


def _cartridge_xml(folder: Path) -> Path | None:
    xml_dir = find_image_dir(folder, ".xml")
    if xml_dir is None:
        return None
    found = [p for p in _xmls(xml_dir) if is_celltracks_xml(p)]
    if not found:
        return None
    prefix = folder.name.split(".")[0]
    named = [p for p in found if p.stem == prefix]  # ACCEPT: <cartridge id>.xml
    return (named or found)[0]


def detect_frame_layout(folder: Path) -> tuple[str, str]:
    """Guess the layout of one slide folder; returns ``(layout, why)``."""
    xml = _cartridge_xml(folder)
    if xml is not None:
        return "celltracks", f"CellTracks XML {xml.name} with multipage TIFF frames"
    images = _images(_descend_images(folder))
    first = read_image(images[0])
    planes = len(as_planes(first, str(images[0]))) if first.axes != "YXS" else 1
    if first.axes == "CYX" and planes > 1:
        return "multipage", f"{images[0].name} holds {planes} pages, one file per frame"
    return "tiles", f"{len(images)} single-channel images ({images[0].name} ...)"


# --------------------------------------------------------------------------------------------- layouts


def _number(stem: str) -> int | None:
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


def _grid_xy(index: int, grid: dict[str, Any] | None) -> tuple[int, int] | None:
    """(column, row) of the ``index``-th frame (0-based) on the slide's grid, or ``None`` without a grid."""
    if grid is None:
        return None
    cols = int(grid["columns"])
    if grid.get("serpentine"):
        return grid_position(index + 1, cols)
    return index % cols, index // cols


def _plan_tiles(
    sample: str,
    folder: Path,
    channels: list[str] | None,
    tiles_per_channel: int | None,
    pattern: str | None,
    grid: dict[str, Any] | None,
    rejected: list[Rejection],
) -> tuple[list[str], list[FrameSource]]:
    folder = _descend_images(folder)
    images = _images(folder)
    if pattern is not None:
        return _plan_tile_pattern(sample, images, channels, pattern, grid, rejected)
    if not channels:
        raise CtcidError(
            "the tiles layout needs the channels of the blocks in order, e.g. "
            f"{arg('channels', ['DAPI', 'CK', 'CD45', 'FITC'])} ('-' skips a block), or {arg('pattern', ...)} "
            "naming the channel in the file name",
            folder,
        )
    numbered: dict[int, Path] = {}
    for p in images:
        n = _number(p.stem)
        if n is None:
            raise CtcidError(f"tile {p.name} has no number in its name (expected e.g. Tile000001.jpg)", folder)
        if n in numbered:
            raise CtcidError(f"two tiles carry number {n}: {numbered[n].name} and {p.name}", folder)
        numbered[n] = p
    blocks = len(channels)
    first = 0 if 0 in numbered else 1  # exports number tiles from 1 (a few from 0)
    last = max(numbered)
    total = len(numbered)
    if tiles_per_channel is None:
        if total % blocks:
            raise CtcidError(
                f"{total} tiles do not divide into {blocks} channel blocks ({','.join(channels)}); "
                f"a block or some tiles are missing, or {arg('channels', ...)} is wrong (set "
                f"{arg('tiles_per_channel', ...)} to find out)",
                folder,
            )
        tiles_per_channel = total // blocks
    tpc = tiles_per_channel
    span = blocks * tpc
    if last - first + 1 > span:
        raise CtcidError(
            f"tiles are numbered {first}..{last}, more than {blocks} blocks of {tpc} "
            f"({arg('channels', channels)}, {arg('tiles_per_channel', tpc)})",
            folder,
        )
    for k, ch in enumerate(channels):
        lo, hi = first + k * tpc, first + (k + 1) * tpc - 1
        if not any(lo <= n <= hi for n in numbered):
            raise CtcidError(
                f"the block of channel {ch} (tiles {lo}..{hi}) is missing: {total} tiles found for {blocks} "
                f"blocks of {tpc}",
                folder,
            )
    if grid is not None and grid["columns"] * grid["rows"] < tpc:
        raise CtcidError(f"the grid {grid['columns']}x{grid['rows']} holds fewer than the {tpc} frames", folder)
    frames = []
    for f in range(tpc):
        files, missing = {}, []
        for k, ch in enumerate(channels):
            n = first + k * tpc + f
            if ch == SKIP:
                continue
            if n in numbered:
                files[ch] = (str(numbered[n]), None)
            else:
                missing.append(f"{ch} (tile {n})")
        if missing:
            rejected.append(
                Rejection(sample, f"frame {first + f}", str(folder), f"missing tile for {', '.join(missing)}")
            )
            continue
        frames.append(FrameSource(sample, first + f, files, _grid_xy(f, grid)))
    return [c for c in channels if c != SKIP], frames


def _plan_tile_pattern(
    sample: str,
    images: list[Path],
    channels: list[str] | None,
    pattern: str,
    grid: dict[str, Any] | None,
    rejected: list[Rejection],
) -> tuple[list[str], list[FrameSource]]:
    if "{frame}" not in pattern or "{channel}" not in pattern:
        raise CtcidError(
            f"{arg('pattern', ...)} must hold {{frame}} and {{channel}}, e.g. Tile{{frame}}_{{channel}}.tif: "
            f"{pattern}"
        )
    regex = (
        re.escape(pattern).replace(r"\{frame\}", r"(?P<frame>\d+)").replace(r"\{channel\}", r"(?P<channel>\w+?)")
    )
    rx = re.compile(regex + r"\Z", re.IGNORECASE)
    found: dict[int, dict[str, str]] = {}
    for p in images:
        m = rx.match(p.name)
        if m is None:
            continue
        found.setdefault(int(m.group("frame")), {})[m.group("channel")] = str(p)
    if not found:
        raise CtcidError(f"no file name matches {arg('pattern', pattern)}", images[0].parent if images else None)
    names = sorted({c for chans in found.values() for c in chans})
    wanted = (
        [c for c in channels if c != SKIP]
        if channels
        else ([c for c in _CANONICAL if c in names] + [c for c in names if c not in _CANONICAL])
    )
    frames = []
    for i, number in enumerate(sorted(found)):
        missing = [c for c in wanted if c not in found[number]]
        if missing:
            rejected.append(
                Rejection(
                    sample, f"frame {number}", str(images[0].parent), f"missing tile for {', '.join(missing)}"
                )
            )
            continue
        frames.append(
            FrameSource(sample, number, {c: (found[number][c], None) for c in wanted}, _grid_xy(i, grid))
        )
    return wanted, frames


def _frame_numbers(files: list[Path]) -> list[int]:
    numbers = [_number(p.stem) for p in files]
    if all(n is not None for n in numbers) and len(set(numbers)) == len(numbers):
        return [int(n) for n in numbers]  # type: ignore[arg-type]
    return list(range(1, len(files) + 1))


def _page_channels(channels: list[str] | None, first: Path) -> list[str]:
    if channels:
        return channels
    n = len(as_planes(read_image(first), str(first), "first"))
    return [f"C{i}" for i in range(n)]


def _plan_multipage(
    sample: str, folder: Path, channels: list[str] | None, grid: dict[str, Any] | None
) -> tuple[list[str], list[FrameSource]]:
    files = _images(_descend_images(folder))
    pages = _page_channels(channels, files[0])
    frames = [
        FrameSource(sample, n, {c: (str(p), i) for i, c in enumerate(pages) if c != SKIP}, _grid_xy(k, grid))
        for k, (p, n) in enumerate(zip(files, _frame_numbers(files), strict=True))
    ]
    return [c for c in pages if c != SKIP], frames


def _plan_celltracks(
    sample: str, folder: Path, channels: list[str] | None, notes: list[str]
) -> tuple[list[str], list[FrameSource], dict[str, Any] | None]:
    tif_dir = find_image_dir(folder, ".tif")
    if tif_dir is None:
        raise CtcidError("no CellTracks frames (.tif) found in this cartridge folder", folder)
    files = [p for p in sorted(tif_dir.glob("*.tif")) if not p.name.startswith(".") and p.is_file()]
    xml_path = _cartridge_xml(folder)
    xml = read_cartridge_xml(xml_path) if xml_path is not None else None
    if xml is None:
        notes.append(f"{sample}: no CellTracks XML found; frame grid and pre-selected events unknown")
    elif xml.columns * xml.rows != len(files):
        notes.append(
            f"{sample}: the XML's grid {xml.columns}x{xml.rows} does not match the {len(files)} frames found"
        )
    if channels is None:
        import tifffile

        try:
            with tifffile.TiffFile(files[0]) as tif:
                n_pages = len(tif.pages)
        except Exception as exc:
            raise CtcidError(f"cannot read the first frame ({type(exc).__name__}: {exc})", files[0]) from None
        channels = list(CELLTRACKS_CHANNELS[:n_pages]) + [
            f"C{i}" for i in range(len(CELLTRACKS_CHANNELS), n_pages)
        ]
    frames = []
    for k, p in enumerate(files):
        number = k + 1
        priors: tuple[PriorEvent, ...] = ()
        grid_xy = None
        if xml is not None:
            priors = tuple(e for e in xml.events if e.frame == number)
            grid_xy = grid_position(number, xml.columns)
        files_ch = {c: (str(p), i) for i, c in enumerate(channels) if c != SKIP}
        frames.append(FrameSource(sample, number, files_ch, grid_xy, priors, celltracks=True))
    grid = None if xml is None else {"columns": xml.columns, "rows": xml.rows, "serpentine": True}
    return [c for c in channels if c != SKIP], frames, grid


def plan_frames(
    src: str | os.PathLike[str],
    *,
    layout: str = "auto",
    channels: list[str] | None = None,
    tiles_per_channel: int | None = None,
    pattern: str | None = None,
    pixel_size_um: float | None = None,
    sample_id: str | None = None,
    grid: tuple[int, int] | None = None,
    serpentine: bool | None = None,
) -> FramePlan:
    """List the frames of a slide (or of every slide in a folder) and the files behind each channel.

    Parameters
    ----------
    src
        A slide folder, or a folder of slide folders.
    layout
        One of :data:`FRAME_LAYOUTS`; ``"auto"`` detects it and says why in ``plan.notes``.
    channels
        Channel of each block of tiles or each page, in order; ``-`` skips one (see :func:`parse_channels`).
    tiles_per_channel
        Tiles in each channel's block (``tiles``); default: the tile count divided by the channels.
    pattern
        For ``tiles`` with the channel in the file name: ``Tile{frame}_{channel}.tif``.
    pixel_size_um
        Pixel size; default from ``frames.json``, 0.64 for CellTracks and otherwise.
    sample_id
        Sample id of a single slide (default: the folder's name).
    grid
        ``(columns, rows)`` of the frames on the slide, for slide coordinates; CellTracks reads it from the XML.
    serpentine
        Frames run back and forth along the rows (odd rows right to left).

    Returns
    -------
    FramePlan
        Frames in order (slide by slide), the channels kept, and the frames already rejected.
    """
    root = Path(src)
    if layout not in FRAME_LAYOUTS:
        raise ConfigError("layout", f"must be one of {', '.join(FRAME_LAYOUTS)}, got {layout!r}", "--layout")
    spec = read_spec(root) if root.is_dir() else None
    notes: list[str] = []
    if spec is not None:
        if layout == "auto" and spec.get("layout"):
            layout = spec["layout"]
            notes.append(f"layout: {layout}, and the other options, from {SPEC_FILE} (flags override them)")
        else:
            notes.append(f"options from {SPEC_FILE} (flags override them)")
        channels = channels or spec.get("channels")
        tiles_per_channel = tiles_per_channel or spec.get("tiles_per_channel")
        pattern = pattern or spec.get("pattern")
        pixel_size_um = pixel_size_um or spec.get("pixel_size_um")
        if grid is None and spec.get("grid"):
            grid = tuple(spec["grid"])  # type: ignore[assignment]
        serpentine = spec.get("serpentine", False) if serpentine is None else serpentine
    slides = find_slides(root)
    if sample_id is not None:
        if len(slides) > 1:
            raise CtcidError(
                f"{arg('sample_id', ...)} names one slide, but {root} holds {len(slides)} slide folders", root
            )
        slides = [(sample_id, slides[0][1])]
    grid_spec = None if grid is None else {"columns": grid[0], "rows": grid[1], "serpentine": bool(serpentine)}
    detected = layout == "auto"
    rejected: list[Rejection] = []
    frames: list[FrameSource] = []
    kept: list[str] | None = None
    layouts_used = set()
    for sample, folder in slides:
        this = layout
        if detected:
            this, why = detect_frame_layout(folder)
            notes.append(f"{sample}: layout {this} (detected: {why}; set {arg('layout', ...)} to override)")
        layouts_used.add(this)
        if this == "tiles":
            names, found = _plan_tiles(sample, folder, channels, tiles_per_channel, pattern, grid_spec, rejected)
        elif this == "multipage":
            names, found = _plan_multipage(sample, folder, channels, grid_spec)
        else:
            names, found, xml_grid = _plan_celltracks(sample, folder, channels, notes)
            grid_spec = grid_spec or xml_grid
        if kept is not None and names != kept:
            raise CtcidError(f"slide {sample} has channels {', '.join(names)}, others {', '.join(kept)}", folder)
        kept = names
        frames.extend(found)
    assert kept is not None
    if "celltracks" in layouts_used and pixel_size_um is None:
        pixel_size_um = CELLTRACKS_PIXEL_UM
    used = layouts_used.pop() if len(layouts_used) == 1 else "mixed"
    plan = FramePlan(
        used, detected, root, kept, frames, rejected, float(pixel_size_um or 0.64), [s for s, _ in slides], notes
    )
    plan.grid = grid_spec
    return plan
