"""Summaries and reports an operator reads."""

from __future__ import annotations

from .html import ReportInputs, focus_scores, load_inputs, render_report, write_report
from .summary import DatasetDescription, dataset_summary, describe_dataset, montage, qc_summary, to_display

__all__ = [
    "DatasetDescription",
    "ReportInputs",
    "dataset_summary",
    "describe_dataset",
    "focus_scores",
    "load_inputs",
    "montage",
    "qc_summary",
    "render_report",
    "to_display",
    "write_report",
]
