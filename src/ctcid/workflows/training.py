"""Training one model with everything ``ctcid train`` writes: the run lifecycle, then its explanations.

``prepare the run folder -> fit one model family -> finish (calibration, threshold, bundle, predictions,
metrics) -> explain (feature models: permutation importance and per-cell attributions) -> complete``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..errors import CtcidError
from ..evaluate import PATIENTS_UNKNOWN, Split, train_val_split
from ..explain import explain_feature_model
from ..export import export_onnx
from ..io import CellDataset, with_labels
from ..models import read_meta
from ..models.registry import ARRAY_MODELS
from ..train import FEATURE_MODELS, FitResult, Fitted, TrainConfig, TrainingRun, fit
from ..train.config import SMALL_STUDY_CELLS
from ..train.run import run_groups

__all__ = [
    "EXPORTS",
    "check_models",
    "explain_run",
    "export_for_prediction",
    "small_study_advice",
    "train_model",
    "train_on_dataset",
]


def explain_run(run: TrainingRun, fitted: Fitted, log: Callable[[str], None] | None = None) -> None:
    """Feature importance (validation cells) and per-cell attributions (test cells, else validation) of a feature
    model, written into its run folder; nothing for an image-only model."""
    if fitted.features is None:
        return
    if log:
        log("feature importance and per-cell attributions")
    explain_feature_model(
        run.out,
        fitted.model,
        fitted.features,
        list(fitted.meta.features.names),
        run.labels,
        run.val_cells,
        run.test_cells,
        run.ds,
        channels=run.cfg.channels,
        seed=run.cfg.seed,
        norm=fitted.extra.get("normalisation"),
        input_size=fitted.extra.get("input_size"),
        train_mean=fitted.feature_baseline,
    )


def train_model(
    ds: CellDataset, split: Split, cfg: TrainConfig, out: str | os.PathLike[str], **options: Any
) -> FitResult:
    """Train one model on ``split`` into the run folder ``out``, explanations included (see the module doc):
    :func:`ctcid.train.fit` with ``then=explain_run``, whose keyword ``options`` (``resume``, ``overwrite``,
    ``log``) it takes.

    Examples
    --------
    >>> from ctcid.evaluate import train_val_split
    >>> split = train_val_split(ds.table["sample_id"], ds.labels(), val_fraction=0.2)  # doctest: +SKIP
    >>> train_model(ds, split, TrainConfig(model="features_gbm", channels=ds.channels), "run")  # doctest: +SKIP
    """
    return fit(ds, split, cfg, out, then=explain_run, **options)


def check_models(models: list[str]) -> None:
    """Refuse an unknown model name before anything is written (a ctcid model or a timm backbone)."""
    from ..models import is_model

    unknown = [m for m in models if not is_model(m)]
    if unknown:
        raise CtcidError(
            f"unknown model(s) {', '.join(unknown)}: not a ctcid model (features_logreg, features_gbm, "
            "features_mlp, dual_branch) nor a timm backbone (e.g. resnet18, resnet34)"
        )


def small_study_advice(ds: CellDataset, models: list[str], *, samples_unknown: bool = False) -> list[str]:
    """What ``train`` and ``cv`` say before training on a small study (fewer than :data:`SMALL_STUDY_CELLS`
    labelled cells) or on cells whose patients are unknown; nothing for a large study.

    >>> small_study_advice(ds, ["resnet18"])  # doctest: +SKIP
    ['40 labelled cells (12 CTC): a small study. Features first: ...']
    """
    y = ds.labels()
    n, n_ctc = int((y >= 0).sum()), int((y == 1).sum())
    lines = []
    if samples_unknown:
        lines.append(
            f"{PATIENTS_UNKNOWN}: each cell is its own group in the splits, so held-out cells share patients with "
            "training cells"
        )
    if n >= SMALL_STUDY_CELLS:
        return lines
    images = [m for m in models if m not in FEATURE_MODELS]
    text = (
        f"{n} labelled cells ({n_ctc} CTC): a small study. Features first: features_logreg (a regularised "
        "logistic regression on the hand-crafted features, chosen by cross-validation) learns from tens of cells, "
        "then features_gbm"
    )
    if images:
        text += (
            f"; {', '.join(images)} learn(s) images from scratch and need hundreds of cells per class (compare "
            "them with features_logreg and features_gbm in cv)"
        )
    return [*lines, text + ". See the README's recipe for a small study."]


#: What ``ctcid train`` exports after training, fastest last: nothing, FP32 ONNX, or FP32 and verified INT8.
EXPORTS = ("none", "onnx", "int8")


def export_for_prediction(
    run_dir: Path, ds: CellDataset, export: str, log: Callable[[str], None] | None = None
) -> str | None:
    """Export a trained network to ONNX (and INT8) and verify it, so that ``ctcid predict`` can run the fastest
    verified engine; returns the fastest engine written (``None`` for trees, which need no export). An INT8
    model that fails its check is not written (the FP32 ONNX model stays)."""
    say = log or (lambda _m: None)
    if export == "none" or read_meta(run_dir / "model").architecture in ARRAY_MODELS:
        return None
    say(f"exporting the model to ONNX{' and INT8' if export == 'int8' else ''} and checking it against PyTorch")
    try:
        export_onnx(run_dir / "model", int8=export == "int8", dataset=ds)
    except CtcidError as exc:
        if export != "int8" or not (run_dir / "model" / "model.onnx").is_file():
            raise
        say(f"INT8 not kept: {exc.reason}")
        return "onnx"
    return "onnx-int8" if export == "int8" else "onnx"


def train_on_dataset(
    dataset: str | os.PathLike[str] | CellDataset,
    out: str | os.PathLike[str],
    cfg: TrainConfig,
    *,
    labels: str | os.PathLike[str] | None = None,
    export: str = "int8",
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """``ctcid train``: split the dataset's patients into training and validation, train (explanations
    included), then export and verify the model for fast prediction (``export``: none, onnx or int8).
    ``labels`` (a CSV of ``cell_id``, ``label``) adds or replaces labels first, e.g. an operator's review."""
    if export not in EXPORTS:
        raise ConfigError("export", f"must be one of {', '.join(EXPORTS)}, got {export!r}", "--export")
    check_models([cfg.model])
    ds = dataset if isinstance(dataset, CellDataset) else CellDataset.open(dataset)
    if labels:
        ds = with_labels(ds, labels)
    for line in small_study_advice(ds, [cfg.model], samples_unknown=cfg.samples_unknown):
        (log or (lambda _m: None))(line)
    split = train_val_split(run_groups(ds, cfg), ds.labels(), val_fraction=cfg.val_fraction, seed=cfg.seed)
    result = train_model(ds, split, cfg, out, resume=resume, overwrite=overwrite, log=log)
    if result.calibration is not None:  # the first (or only) process exports
        export_for_prediction(Path(out), ds, export, log)
    return result
