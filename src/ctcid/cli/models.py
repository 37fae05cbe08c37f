"""Commands on models: ``train``, ``cv``, ``ablate``, ``pool``, ``evaluate``, ``predict``, ``export``, ``explain``,
``report`` and ``demo``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..evaluate import DEFAULT_COUNT_METHOD, MIN_CTC_PATIENTS
from ..train.config import TrainConfig
from . import _ui
from ._app import DatasetArg, JobsOpt, OverwriteOpt, app
from ._options import resolve_options, with_options

__all__ = ["ablate", "cv", "demo", "evaluate", "explain", "export", "pool", "predict", "report", "train"]

ModelArg = Annotated[Path, typer.Argument(help="Model bundle folder (a run's model/).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]
CountMethodOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Count reported as ctc_estimate: expected or adjusted. [default: {DEFAULT_COUNT_METHOD} when the "
        f"model's error rates come from {MIN_CTC_PATIENTS} or more validation patients with a CTC, else expected]"
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
BatchOpt = Annotated[int, typer.Option(help="Cells per inference batch.")]


def _inferring(run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``run`` (``predict`` or ``evaluate_bundle``) with the progress bar of prediction."""
    with _ui.progress("predict") as progress:
        return run(*args, progress=progress, **kwargs)


@app.command()
@with_options(TrainConfig, augment=True)
def train(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Argument(help="Run folder to create.")],
    labels: Annotated[
        Path | None, typer.Option(help="Labels CSV (cell_id, label[, sample_id]) added to the dataset's.")
    ] = None,
    export: Annotated[
        str, typer.Option(help="After training, export and verify for fast prediction: int8, onnx or none.")
    ] = "int8",
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    overrides: dict | None = None,
) -> None:
    """Train one model: patients split into training and validation; calibration and threshold from validation."""
    from ..workflows import train_on_dataset

    cfg = resolve_options(TrainConfig, "train", overrides or {})
    res = train_on_dataset(
        dataset, out, cfg, labels=labels, export=export, resume=resume, overwrite=overwrite, log=_ui.note
    )
    _ui.fit_summary(res)


@app.command()
@with_options(TrainConfig, augment=True)
def cv(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Argument(help="Folder for the comparison.")],
    models: Annotated[str, typer.Option(help="Models to compare, comma-separated.")] = "resnet34",
    jobs: JobsOpt = 1,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    overrides: dict | None = None,
) -> None:
    """Compare architectures with patient-grouped K-fold cross-validation: mean and spread over folds."""
    from ..config import parse_list
    from ..workflows import compare_models

    cfg = resolve_options(TrainConfig, "train", overrides or {})
    names = parse_list(models, "--models") or []
    res = compare_models(dataset, out, cfg, names, resume=resume, overwrite=overwrite, jobs=jobs, log=_ui.note)
    _ui.comparison(res.table, out)


@app.command()
@with_options(TrainConfig, augment=True)
def ablate(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Argument(help="Folder for the ablation.")],
    system: Annotated[
        str,
        typer.Option(
            help="Which table: A (System A's ablation), A-dapi (the ways DAPI can enter System A's training: "
            "extra samples in DAPI's window or as a bright-field stand-in, or DAPI alone, tested on bright field) "
            "or B (System B's ablation)."
        ),
    ] = "A",
    variants: Annotated[
        str | None,
        typer.Option(
            help="Train only these rows of the table, comma-separated (e.g. bf,bf+aug,bf+aug+dapi); they keep "
            "the table's order, and the first of them is the reference of the paired differences."
        ),
    ] = None,
    jobs: JobsOpt = 1,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    overrides: dict | None = None,
) -> None:
    """System A's table (BF only; each augmentation family; all three; + DAPI in training), the ways of adding
    DAPI to System A's training (--system A-dapi), or System B's (image CNN, features GBM, features MLP, dual
    branch with concatenation and with gated fusion)."""
    from ..config import parse_list
    from ..workflows import ablate as run_ablation

    given = dict(overrides or {})
    cfg = resolve_options(TrainConfig, "train", given)
    res = run_ablation(
        dataset,
        out,
        cfg,
        system,
        channels=given.get("channels"),
        only=parse_list(variants, "--variants"),
        resume=resume,
        overwrite=overwrite,
        jobs=jobs,
        log=_ui.note,
    )
    _ui.comparison(res.table, out)


@app.command()
def pool(
    comparisons: Annotated[
        list[Path], typer.Argument(help="Finished `ctcid cv` or `ctcid ablate` folders, one per cohort.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the pooled table.")],
    n_boot: Annotated[int, typer.Option(help="Patient resamples of each interval.", min=100)] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    stratify: Annotated[
        bool,
        typer.Option(
            "--stratify/--no-stratify",
            help="Resample patients within each cohort (keeping every cohort's size), or all together.",
        ),
    ] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Pool comparisons of the same variants run on different cohorts: F1, PR-AUC and paired differences over
    all their held-out patients, beside each cohort's own difference."""
    from ..workflows import pool_comparisons

    table = pool_comparisons(
        comparisons, out, n_boot=n_boot, seed=seed, stratify=stratify, overwrite=overwrite, log=_ui.note
    )
    _ui.pooled(table, out)


@app.command()
def evaluate(
    model: ModelArg,
    dataset: Annotated[Path, typer.Argument(help="Labelled dataset folder.")],
    out: Annotated[Path, typer.Argument(help="Folder for metrics, plots and predictions.")],
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    count_method: CountMethodOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Apply a bundle to a labelled dataset: metrics with bootstrap intervals, counts, plots."""
    from ..predict import evaluate_bundle

    given = {"batch_size": batch_size, "device": device, "n_boot": n_boot, "count_method": count_method}
    res = _inferring(evaluate_bundle, model, dataset, out, overwrite=overwrite, **given)
    _ui.evaluation(res, dataset)


@app.command()
def predict(
    model: ModelArg,
    input: Annotated[Path, typer.Argument(help="A dataset folder, or a raw export folder to ingest on the fly.")],
    out: Annotated[Path, typer.Argument(help="Folder for predictions.parquet/.csv, counts.csv, predict.json.")],
    engine: Annotated[
        str, typer.Option(help="auto (the fastest engine verified for the bundle), torch, onnx or onnx-int8.")
    ] = "auto",
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    devices: Annotated[str, typer.Option(help="Data-parallel processes (GPUs) per node, e.g. 4.")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy for several devices (ddp).")] = "auto",
    num_nodes: Annotated[int, typer.Option(help="Nodes for multi-node prediction.")] = 1,
    count_method: CountMethodOpt = None,
    blood_volume_ml: Annotated[
        float | None, typer.Option(help="Blood volume of every sample (mL): adds CTCs per 7.5 mL.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Apply a bundle to new samples: calibrated p_ctc, calls, uncertainty and CTC counts per sample."""
    from ..predict import predict as run_predict

    given = {"engine": engine, "batch_size": batch_size, "device": device, "strategy": strategy}
    workers = {"devices": int(devices) if devices.isdigit() else devices, "num_nodes": num_nodes}
    counting = {"count_method": count_method, "blood_volume_ml": blood_volume_ml}
    res = _inferring(
        run_predict, model, input, out, overwrite=overwrite, log=_ui.note, **given, **workers, **counting
    )
    if res is not None:  # a data-parallel worker returns None: the first process reports
        _ui.counts(res.counts, f"CTCs per sample ({len(res.predictions)} cells, {res.seconds:.1f} s)")
        _ui.out.print(f"results in {out}")


@app.command()
def export(
    model: ModelArg,
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="ONNX file (default: model.onnx in the bundle).")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Also a statically quantised INT8 model.")] = False,
    dataset: Annotated[
        Path | None, typer.Option(help="Dataset for the checks and INT8 calibration (default: the training one).")
    ] = None,
    calibration_cells: Annotated[int, typer.Option(help="Training cells that calibrate INT8.")] = 256,
) -> None:
    """Export a bundle to ONNX (metadata embedded), checked against PyTorch; optionally INT8."""
    import json

    from ..errors import CtcidError
    from ..export import export_onnx

    if format != "onnx":
        raise CtcidError(f"--format must be onnx, got {format!r}")
    report = export_onnx(model, out, int8=int8, dataset=dataset, calibration_cells=calibration_cells)
    _ui.out.print(json.dumps(report, indent=2))


@app.command()
def explain(
    model: ModelArg,
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[
        Path, typer.Argument(help="Folder for one PNG per cell (and attributions for feature models).")
    ],
    cells: Annotated[str | None, typer.Option(help="Cell ids, comma-separated.")] = None,
    top: Annotated[int, typer.Option(help="Without --cells: the N most CTC-like cells.")] = 16,
    method: Annotated[
        str, typer.Option(help="Saliency: guided_gradcam, gradcam, integrated_gradients or occlusion.")
    ] = "guided_gradcam",
    layer: Annotated[
        str, typer.Option(help="Grad-CAM layer (a module name, e.g. layer2), or auto: the last grid >= 8x8.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the re-initialised model of the randomisation check.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Saliency overlays (image models), scored against cell masks, and feature attributions for chosen cells."""
    from ..config import parse_list
    from ..explain import explain_cells

    ids = parse_list(cells, "--cells")
    res = explain_cells(
        model, dataset, out, cells=ids, top=top, method=method, layer=layer, seed=seed, overwrite=overwrite
    )
    _ui.explained(res)


@app.command()
def report(
    source: Annotated[Path, typer.Argument(help="A `ctcid predict` output folder or a training run folder.")],
    out_html: Annotated[Path, typer.Argument(help="The HTML file to write (self-contained).")],
    top: Annotated[int, typer.Option(help="Cells in the candidate and error galleries.")] = 48,
    queue: Annotated[int, typer.Option(help="Cells in the review queue nearest the threshold.")] = 24,
    clinical: Annotated[
        Path | None, typer.Option(help="Clinical table (sample_id, time_months, event): adds a survival section.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """One self-contained HTML report for operator review: counts, galleries, QC, metrics, model card."""
    from ..errors import CtcidError
    from ..report import write_report

    if out_html.exists() and not overwrite:
        raise CtcidError("already exists; choose another file or pass --overwrite", out_html)
    write_report(source, out_html, top=top, queue=queue, clinical=clinical)
    _ui.out.print(f"report: {out_html}")


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder for everything the demo writes.")] = Path("ctcid-demo"),
    patients: Annotated[int, typer.Option(help="Synthetic patients.")] = 10,
    cells_per_patient: Annotated[int, typer.Option(help="Cells per patient.")] = 150,
    difficulty: Annotated[str, typer.Option(help="easy, medium or hard.")] = "medium",
    epochs: Annotated[int, typer.Option(help="Training epochs per fold.")] = 5,
    folds: Annotated[int, typer.Option(help="Patient-grouped folds.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run the main job end to end on a synthetic cohort: synth, ingest, summary, CV, prediction, report."""
    from ..workflows import run_demo

    with _ui.progress("demo") as progress:
        res = run_demo(
            out,
            patients=patients,
            cells_per_patient=cells_per_patient,
            difficulty=difficulty,
            epochs=epochs,
            folds=folds,
            seed=seed,
            overwrite=overwrite,
            log=_ui.note,
            progress=progress,
        )
    _ui.demo(res)
