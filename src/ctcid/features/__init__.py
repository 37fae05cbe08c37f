"""Hand-crafted features of each cell: morphology, texture and intensity, cached beside the dataset."""

from __future__ import annotations

from .store import SegmentationCache, compute_features, load_features, load_segmentation, segment_dataset
from .table import FeatureConfig, channel_key, feature_catalogue, measure_cells

__all__ = [
    "FeatureConfig",
    "SegmentationCache",
    "channel_key",
    "compute_features",
    "feature_catalogue",
    "load_features",
    "load_segmentation",
    "measure_cells",
    "segment_dataset",
]
