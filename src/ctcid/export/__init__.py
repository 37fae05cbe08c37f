"""Exporting model bundles to other runtimes (ONNX, with an optional INT8 copy)."""

from __future__ import annotations

from .onnx import INT8_F1_TOLERANCE, export_onnx

__all__ = ["INT8_F1_TOLERANCE", "export_onnx"]
