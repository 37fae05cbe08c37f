"""Summaries and reports an operator reads."""

from __future__ import annotations

from .html import ReportInputs, focus_scores, load_inputs, render_report, write_report
from .summary import dataset_summary, montage, qc_summary, to_display

__all__ = [
    "ReportInputs",
    "dataset_summary",
    "focus_scores",
    "load_inputs",
    "montage",
    "qc_summary",
    "render_report",
    "to_display",
    "write_report",
]
