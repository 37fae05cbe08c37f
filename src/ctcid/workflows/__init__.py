"""Workflows over the library's layers: a training run with its explanations, patient-grouped cross-validation
of several variants (architecture comparisons, System A's and System B's ablations), comparisons on different
cohorts pooled, and the demo's pipeline.

What ``ctcid train``, ``ctcid cv``, ``ctcid ablate``, ``ctcid pool`` and ``ctcid demo`` run, callable from a
notebook.
"""

from __future__ import annotations

from .cv import (
    SYSTEM_A_DAPI_VARIANTS,
    SYSTEM_A_VARIANTS,
    SYSTEM_B_VARIANTS,
    CVResult,
    ablate,
    compare_models,
    run_variants,
    system_a_variants,
    system_b_variants,
)
from .demo import DemoResult, run_demo
from .pool import pool_comparisons
from .training import (
    EXPORTS,
    explain_run,
    export_for_prediction,
    small_study_advice,
    train_model,
    train_on_dataset,
)

__all__ = [
    "EXPORTS",
    "SYSTEM_A_DAPI_VARIANTS",
    "SYSTEM_A_VARIANTS",
    "SYSTEM_B_VARIANTS",
    "CVResult",
    "DemoResult",
    "ablate",
    "compare_models",
    "explain_run",
    "export_for_prediction",
    "pool_comparisons",
    "run_demo",
    "run_variants",
    "small_study_advice",
    "system_a_variants",
    "system_b_variants",
    "train_model",
    "train_on_dataset",
]
