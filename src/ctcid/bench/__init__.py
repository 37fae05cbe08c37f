"""Benchmarks: each measures ctcid against a plain baseline on the same data, in the same run."""

from __future__ import annotations

from .ingest import bench_ingest, machine_info

__all__ = ["bench_ingest", "machine_info"]
