"""Classical segmentation of the central cell and its nucleus in each crop."""

from __future__ import annotations

from .classical import SEG_FLAGS, SegmentConfig, otsu_thresholds, segment_cells, signal_to_noise

__all__ = ["SEG_FLAGS", "SegmentConfig", "otsu_thresholds", "segment_cells", "signal_to_noise"]
