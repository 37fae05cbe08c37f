"""Summaries and reports an operator reads."""

from __future__ import annotations

from .summary import dataset_summary, montage, qc_summary, to_display

__all__ = ["dataset_summary", "montage", "qc_summary", "to_display"]
