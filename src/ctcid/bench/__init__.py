"""Benchmarks: each measures ctcid against a plain baseline on the same data, in the same run."""

from __future__ import annotations

from .counts import bench_counts
from .detect import bench_detect
from .features import bench_features
from .ingest import bench_ingest, machine_info
from .predict import bench_predict
from .saliency import bench_saliency
from .small_cohorts import bench_small_cohorts
from .thresholds import bench_thresholds
from .train import bench_train

__all__ = [
    "bench_counts",
    "bench_detect",
    "bench_features",
    "bench_ingest",
    "bench_predict",
    "bench_saliency",
    "bench_small_cohorts",
    "bench_thresholds",
    "bench_train",
    "machine_info",
]
