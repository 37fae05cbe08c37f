"""``ctcid evaluate``: a bundle applied to a labelled dataset, with every evaluation of :mod:`ctcid.evaluate`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._runtime import Progress
from ..errors import CtcidError
from ..evaluate import predictions_frame, write_metrics
from ..io import CellDataset, atomic_dir, atomic_write_text
from ..models import check_compatible, load_bundle
from .infer import bundle_logits
from .run import sample_counts

__all__ = ["EvaluateResult", "evaluate_bundle"]


@dataclass
class EvaluateResult:
    """What ``evaluate_bundle`` wrote: the folder, the predictions, the per-sample counts and the summary."""

    out: Path
    model_id: str
    predictions: pd.DataFrame
    counts: pd.DataFrame
    summary: dict[str, Any]


def evaluate_bundle(
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    device: str = "auto",
    n_boot: int = 1000,
    count_method: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> EvaluateResult:
    """Apply the bundle ``model`` to the labelled cells of ``dataset`` and write into ``out`` (atomically)
    ``predictions.csv``, ``metrics.csv``/``.json`` (bootstrap intervals), ``counts.csv`` (every estimator per
    patient, with the truth) and the PR/ROC, confusion and calibration plots."""
    bundle = load_bundle(model)
    ds = CellDataset.open(dataset)
    check_compatible(bundle.meta, ds)
    cells = np.flatnonzero(ds.labels() >= 0)
    if len(cells) == 0:
        raise CtcidError("the dataset has no labelled cells to evaluate against", dataset)
    m = bundle.meta
    update = None if progress is None else (lambda done, total: progress(done, total, "predict"))
    logits = bundle_logits(bundle, ds, cells, batch_size=batch_size, device=device, progress=update)
    frame = predictions_frame(ds, cells, logits, m.calibration_map(), m.threshold, m.model_id)
    counts = sample_counts(ds, frame, m, method=count_method)
    with atomic_dir(out, overwrite) as tmp:
        atomic_write_text(tmp / "predictions.csv", frame.to_csv(index=False))
        summary = write_metrics(tmp, frame, counts, threshold=m.threshold, n_boot=n_boot, seed=0)
    return EvaluateResult(Path(out), m.model_id, frame, counts, summary)
