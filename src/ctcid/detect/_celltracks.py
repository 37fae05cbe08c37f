"""CellSearch / CellTracks cartridges, read as ACCEPT's ``CellTracks`` loader reads them.

What is taken from ACCEPT (Zeune et al., ``CellTracks.m``):

* The image folder is found by going down single sub-folders until one holds TIFF files, the XML the same
  way (ACCEPT asks for at least 100 TIFFs; here one is enough, so small test cartridges read too). Names
  starting with ``.`` are ignored.
* Frames are the TIFF files in name order, numbered from 1; each is a multipage TIFF whose pages are DNA
  (DAPI), Marker1 (FITC), CK (PE) and CD45 (APC), then Marker2 and Marker3 when present.
* Pixel values are rescaled page by page from two private TIFF tags (MATLAB's ``UnknownTags(2)`` and
  ``UnknownTags(3)``, low and high): ``low + raw * (high - low) / max(raw)``, then 32768 is subtracted when the
  result exceeds 32767, which gives back the 12-bit scale of the camera.
* The XML holds the frame grid (``runs/record``: ``numcols``, ``numrows``, ``camxsize``, ``camysize``) and
  the events the instrument pre-selected (``events/record``: ``eventnum``, ``numselected``, ``framenum`` and
  ``location``, two corner points in slide pixels). Frames are laid out in rows, serpentine: even rows
  (0-based) run left to right, odd rows right to left.
* Pixel size 0.64 um.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CtcidError, InputError, arg
from ..io.imread import MAX_PIXELS

__all__ = [
    "CELLTRACKS_CHANNELS",
    "CartridgeXml",
    "PriorEvent",
    "find_image_dir",
    "grid_position",
    "is_celltracks_xml",
    "read_cartridge_xml",
    "read_celltracks_frame",
]

#: Page names of a CellTracks frame, in page order (ACCEPT: DNA, Marker1, CK, CD45, Marker2, Marker3).
CELLTRACKS_CHANNELS = ("DAPI", "FITC", "CK", "CD45", "Marker2", "Marker3")
#: Pixel size of the CellTracks camera (um).
CELLTRACKS_PIXEL_UM = 0.64
#: Margin (px) ACCEPT adds around an event's bounding box.
EVENT_MARGIN_PX = 10


@dataclass(frozen=True)
class PriorEvent:
    """An event the instrument pre-selected: its number, selection score and box in frame pixels."""

    eventnum: int
    numselected: int
    frame: int
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class CartridgeXml:
    """The frame grid and the events of a cartridge's XML."""

    path: Path
    columns: int
    rows: int
    cam_x: int
    cam_y: int
    events: tuple[PriorEvent, ...]


def find_image_dir(folder: Path, suffix: str) -> Path | None:
    """The first folder, going down single sub-folders from ``folder``, that holds a ``suffix`` file."""
    current = folder
    for _ in range(10):
        entries = [e for e in sorted(current.iterdir()) if not e.name.startswith(".")]
        if any(e.is_file() and e.suffix.lower() == suffix for e in entries):
            return current
        subdirs = [e for e in entries if e.is_dir()]
        if len(subdirs) != 1:
            return None
        current = subdirs[0]
    return None


def is_celltracks_xml(path: Path) -> bool:
    """Whether ``path`` parses as XML with an ``archive`` or ``export`` root (how CellTracks exports start)."""
    try:
        for _event, elem in ET.iterparse(path, events=("start",)):
            return elem.tag.lower() in ("archive", "export")
    except (ET.ParseError, OSError):
        return False
    return False


def _text(record: ET.Element, name: str, path: Path) -> str:
    for child in record:
        if child.tag.lower() == name:
            return (child.text or "").strip()
    raise CtcidError(f"CellTracks XML record lacks <{name}>", path)


def _int(record: ET.Element, name: str, path: Path) -> int:
    text = _text(record, name, path)
    try:
        return int(float(text))
    except ValueError:
        raise CtcidError(f"CellTracks XML <{name}> is not a number: {text!r}", path) from None


_POINT = re.compile(r"\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)")


def grid_position(frame: int, columns: int) -> tuple[int, int]:
    """Column and row (0-based) of frame ``frame`` (1-based) on a serpentine grid of ``columns`` columns.

    Examples
    --------
    >>> [grid_position(i, 3) for i in (1, 3, 4, 6, 7)]
    [(0, 0), (2, 0), (2, 1), (0, 1), (0, 2)]
    """
    row = (frame - 1) // columns
    col = (frame - 1) % columns
    return (columns - 1 - col if row % 2 else col), row


def read_cartridge_xml(path: Path) -> CartridgeXml:
    """Parse a cartridge's XML: the run's frame grid and every event, boxes converted to frame pixels."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CtcidError(f"malformed CellTracks XML ({exc})", path) from None
    runs = [r for r in root.iter() if r.tag.lower() == "runs"]
    run = next((c for r in runs for c in r if c.tag.lower() == "record"), None)
    if run is None:
        raise CtcidError("CellTracks XML has no <runs><record> (frame grid)", path)
    columns, rows = _int(run, "numcols", path), _int(run, "numrows", path)
    cam_x, cam_y = _int(run, "camxsize", path), _int(run, "camysize", path)
    if columns < 1 or rows < 1 or cam_x < 1 or cam_y < 1:
        raise CtcidError(f"CellTracks XML frame grid {columns}x{rows} of {cam_x}x{cam_y} px is not valid", path)
    events = []
    for ev in (r for e in root.iter() if e.tag.lower() == "events" for r in e if r.tag.lower() == "record"):
        points = _POINT.findall(_text(ev, "location", path))
        if len(points) != 2:
            raise CtcidError(f"CellTracks event location is not two points: {_text(ev, 'location', path)!r}", path)
        (ax, ay), (bx, by) = ((float(x), float(y)) for x, y in points)
        frame = _int(ev, "framenum", path)
        col, row = grid_position(frame, columns)
        ox, oy = cam_x * col, cam_y * row
        events.append(
            PriorEvent(
                _int(ev, "eventnum", path),
                _int(ev, "numselected", path),
                frame,
                min(ax, bx) - ox,
                min(ay, by) - oy,
                max(ax, bx) - ox,
                max(ay, by) - oy,
            )
        )
    return CartridgeXml(path, columns, rows, cam_x, cam_y, tuple(events))


def _unknown_tags(page) -> list[float]:
    """Values of the tags of a page that are not standard TIFF tags, in tag-number order."""
    import tifffile

    known = tifffile.TIFF.TAGS
    values = []
    for tag in sorted(page.tags.values(), key=lambda t: t.code):
        if tag.code in known:
            continue
        value = tag.value
        if isinstance(value, tuple | list):
            value = value[0] if len(value) == 1 else None
        if isinstance(value, int | float | np.integer | np.floating):
            values.append(float(value))
        else:
            values.append(float("nan"))
    return values


def read_celltracks_frame(path: str, rescale: bool = True) -> np.ndarray:
    """The pages of one CellTracks frame as float64 ``[pages, H, W]``, rescaled to the camera's 12-bit scale."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            if not pages:
                raise InputError("TIFF has no pages", path)
            planes = []
            for i, page in enumerate(pages):
                if len(page.shape) < 2 or int(np.prod(page.shape)) > MAX_PIXELS:
                    raise InputError(
                        f"page {i + 1} has absurd dimensions {page.shape}; refused before decoding", path
                    )
                raw = page.asarray().astype(np.float64)
                if raw.ndim != 2:
                    raise InputError(f"page {i + 1} is not a single grey plane (shape {raw.shape})", path)
                if rescale:
                    tags = _unknown_tags(page)
                    if len(tags) < 3 or not np.isfinite(tags[1:3]).all():
                        raise InputError(
                            f"page {i + 1} lacks the CellTracks scaling tags (found {len(tags)} private tags); "
                            f"not a CellTracks TIFF? read it with {arg('layout', 'multipage')}",
                            path,
                        )
                    low, high = tags[1], tags[2]
                    peak = raw.max()
                    raw = low + raw * ((high - low) / peak) if peak > 0 else np.full_like(raw, low)
                if raw.max() > 32767:
                    raw = raw - 32768
                planes.append(raw)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(f"corrupt or truncated TIFF ({type(exc).__name__}: {exc})", path) from None
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise InputError(f"pages of different sizes {sorted(shapes)}", path)
    return np.stack(planes)
