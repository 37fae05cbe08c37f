"""From whole frames to cells: read slide and cartridge scans, find every cell, write one crop per cell.

Imaging platforms other than the DEPArray (CellSearch/CellTracks, slide scanners of the high-definition single
cell assay family) record whole camera fields, each holding many cells. :func:`detect` reads such a scan
(:mod:`ctcid.detect.layouts`), finds the cells in each frame (:mod:`ctcid.detect.find`) and writes an ordinary
ctcid dataset, so every later command works on it unchanged.
"""

from __future__ import annotations

from .find import BACKENDS, EVENT_FLAGS, FindConfig, Found, check_backend, find_cells
from .layouts import FRAME_LAYOUTS, FramePlan, FrameSource, parse_channels, parse_grid, plan_frames
from .run import DetectOptions, DetectResult, crop_events, detect, read_frame

__all__ = [
    "BACKENDS",
    "EVENT_FLAGS",
    "FRAME_LAYOUTS",
    "DetectOptions",
    "DetectResult",
    "FindConfig",
    "Found",
    "FramePlan",
    "FrameSource",
    "check_backend",
    "crop_events",
    "detect",
    "find_cells",
    "parse_channels",
    "parse_grid",
    "plan_frames",
    "read_frame",
]
