"""Reading instrument exports, and the cell dataset store every later step reads."""

from __future__ import annotations

from ._atomic import atomic_dir, atomic_write_bytes, atomic_write_text, output_errors
from .imread import Image, read_image, sniff_format, to_uint16
from .ingest import IngestOptions, IngestResult, fit_to_size, ingest
from .layouts import CLASSES, LAYOUTS, CellSource, IngestPlan, Rejection, detect_layout, plan_ingest
from .relabel import with_labels
from .store import CellDataset, DatasetWriter, ShardedPixels, write_cohort
from .truth import load_true_masks, write_true_masks

__all__ = [
    "CLASSES",
    "LAYOUTS",
    "CellDataset",
    "CellSource",
    "DatasetWriter",
    "Image",
    "IngestOptions",
    "IngestPlan",
    "IngestResult",
    "Rejection",
    "ShardedPixels",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "detect_layout",
    "fit_to_size",
    "ingest",
    "load_true_masks",
    "output_errors",
    "plan_ingest",
    "read_image",
    "sniff_format",
    "to_uint16",
    "with_labels",
    "write_cohort",
    "write_true_masks",
]
