"""ctcid: circulating tumour cell identification from single-cell images.

The package is layered; each layer imports only the layers below it (``tests/test_architecture.py`` checks it):

======================  =================================================================================
layer                   packages
======================  =================================================================================
foundations             ``errors``, ``_version``, ``_lazy``; ``config``, ``_workers``, ``_runtime``
data in                 ``io`` (readers, the dataset store); ``synth``, ``segment``; ``detect``, ``features``
data to tensors         ``data`` (batches, scaling, the one preprocessing); ``augment``
models                  ``models`` (registry, bundle, calibration map)
evaluation              ``evaluate`` (metrics, splits, calibration fitting, counts, prediction tables)
application             ``predict``, ``survival``; ``train`` (the run lifecycle)
interpretation, output  ``explain``, ``export``; ``report``
workflows               ``workflows`` (training with explanations, cross-validation, ablations, the demo)
front ends              ``review``, ``bench``; ``cli``
======================  =================================================================================

The main workflows are importable from the top level (lazily, so ``import ctcid`` stays light)::

    from ctcid import ingest, IngestOptions, TrainConfig, train_on_dataset, predict, write_report
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import CtcidError, InputError

#: Top-level names of the main workflows and the module each comes from.
_API = {
    "CellDataset": "ctcid.io",
    "IngestOptions": "ctcid.io",
    "ingest": "ctcid.io",
    "SynthConfig": "ctcid.synth",
    "synth_dataset": "ctcid.synth",
    "write_export": "ctcid.synth",
    "DetectOptions": "ctcid.detect",
    "detect": "ctcid.detect",
    "TrainConfig": "ctcid.train",
    "patient_folds": "ctcid.evaluate",
    "train_val_split": "ctcid.evaluate",
    "count_table": "ctcid.evaluate",
    "train_model": "ctcid.workflows",
    "train_on_dataset": "ctcid.workflows",
    "compare_models": "ctcid.workflows",
    "ablate": "ctcid.workflows",
    "run_demo": "ctcid.workflows",
    "load_bundle": "ctcid.models",
    "predict": "ctcid.predict",
    "evaluate_bundle": "ctcid.predict",
    "export_onnx": "ctcid.export",
    "explain_cells": "ctcid.explain",
    "write_report": "ctcid.report",
    "analyse_survival": "ctcid.survival",
}

__all__ = ["CtcidError", "InputError", "__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ctcid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
