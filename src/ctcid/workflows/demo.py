"""The demo's pipeline: the main job end to end on a synthetic cohort, callable from a notebook.

Synthetic DEPArray export -> ingest -> dataset summary and montage -> patient-grouped cross-validation of a
ResNet-18 on the four channels, beside a logistic regression on the hand-crafted features (seconds more) -> three
new patients as a raw export, predicted with the CNN's first-fold model -> the operator report. Everything goes
into one folder; a run that fails leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._runtime import Progress
from ..errors import CtcidError, arg
from ..io import CellDataset, IngestOptions, ingest
from ..predict import PredictResult, predict
from ..report import DatasetDescription, describe_dataset, write_report
from ..synth import SynthConfig, write_export
from ..train import TrainConfig
from .cv import CVResult, run_variants

__all__ = ["DemoResult", "run_demo"]

#: The variant name of the demo's model (its folder under ``cv/``).
DEMO_MODEL = "resnet18 4 channels"


@dataclass
class DemoResult:
    """What the demo wrote: the folder, the dataset's description, the comparison, the new patients'
    predictions and the report."""

    out: Path
    description: DatasetDescription
    cv: CVResult
    predictions: PredictResult
    report: Path


def run_demo(
    out: str | os.PathLike[str] = "ctcid-demo",
    *,
    patients: int = 10,
    cells_per_patient: int = 150,
    difficulty: str = "medium",
    epochs: int = 5,
    folds: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the demo into ``out`` (see the module docstring); ``log`` receives one line per step."""
    say = log or (lambda _m: None)
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise CtcidError(f"already exists; choose another folder or pass {arg('overwrite')}", out)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        return _steps(out, patients, cells_per_patient, difficulty, epochs, folds, seed, say, progress)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _steps(
    out: Path,
    patients: int,
    cells_per_patient: int,
    difficulty: str,
    epochs: int,
    folds: int,
    seed: int,
    say: Callable[[str], None],
    progress: Progress | None,
) -> DemoResult:
    cfg = SynthConfig(patients=patients, cells_per_patient=cells_per_patient, difficulty=difficulty, seed=seed)
    say(f"[1/6] synthetic DEPArray export: {patients} patients x {cells_per_patient} cells ({difficulty})")
    write_export(out / "export", cfg, progress=progress)
    say("[2/6] ingest into a cell dataset")
    ingest(out / "export", out / "dataset", IngestOptions(), progress=progress, log=say)
    say("[3/6] dataset summary")
    description = describe_dataset(
        out / "dataset", montage_png=out / "montage.png", summary_csv=out / "summary.csv"
    )
    say(
        f"[4/6] {folds}-fold patient-grouped CV of a ResNet-18 on BF, DAPI, CK and CD45, and of a logistic "
        "regression on their hand-crafted features"
    )
    train_cfg = TrainConfig(
        model="resnet18",
        channels=["BF", "DAPI", "CK", "CD45"],
        epochs=epochs,
        batch_size=64,
        input_size=64,
        n_folds=folds,
        n_boot=200,
        patience=epochs,
        seed=seed,
    )
    cv = run_variants(
        CellDataset.open(out / "dataset"),
        {DEMO_MODEL: train_cfg, "features_logreg": train_cfg.replace(model="features_logreg")},
        out / "cv",
        base=train_cfg,
        title="ctcid demo: patient-grouped CV on a synthetic cohort",
        log=say,
    )
    new = SynthConfig(
        patients=3, cells_per_patient=cells_per_patient, difficulty=difficulty, seed=seed + 1, sample_prefix="N"
    )
    say("[5/6] three new patients (N01-N03): raw export, predicted with the fold-1 model")
    write_export(out / "new-patients", new, progress=progress)
    model = out / "cv" / DEMO_MODEL / "fold0" / "model"
    predictions = predict(model, out / "new-patients", out / "predict", log=say, progress=progress)
    assert predictions is not None  # a single process always writes
    say("[6/6] the operator report")
    report = write_report(out / "predict", out / "report.html")
    return DemoResult(out, description, cv, predictions, report)
