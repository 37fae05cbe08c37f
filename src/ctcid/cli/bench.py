"""Benchmark commands: ``ctcid bench ingest``, ``train``, ``predict``, ``features`` and ``counts``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _ui
from ._app import WorkersOpt, bench_app

__all__ = [
    "bench_counts_cmd",
    "bench_features_cmd",
    "bench_ingest",
    "bench_predict_cmd",
    "bench_saliency_cmd",
    "bench_small_cohorts_cmd",
    "bench_train_cmd",
]


@bench_app.command("ingest")
def bench_ingest(
    cells: Annotated[int, typer.Option(help="Cells in the generated export.")] = 2000,
    size: Annotated[int, typer.Option(help="Crop size in px.")] = 80,
    workers: WorkersOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """Ingest throughput (cells/s) against a plain loop over the same files, in one run."""
    from ..bench import bench_ingest as run_bench

    _ui.note(f"generating a {cells}-cell export, then timing both readers on it ...")
    result = run_bench(cells=cells, size=size, workers=workers)
    _ui.bench_result(result, out)


@bench_app.command("train")
def bench_train_cmd(
    model: Annotated[str, typer.Option(help="Backbone.")] = "resnet50",
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 512,
    size: Annotated[int, typer.Option(help="Input size in px.")] = 96,
    steps: Annotated[int, typer.Option(help="Timed steps (after warm-up).")] = 30,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 5,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU), 32 or bf16-mixed.")] = "auto",
    workers: Annotated[int, typer.Option(help="Batch loader processes.")] = 2,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model in both loops.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """Training images/s: model only (tensors on the device) against end to end (store + augmentation)."""
    from ..bench import bench_train

    result = bench_train(
        model=model,
        batch_size=batch_size,
        size=size,
        steps=steps,
        warmup=warmup,
        device=device,
        precision=precision,
        workers=workers,
        compile=compile,
    )
    _ui.bench_result(result, out)


@bench_app.command("predict")
def bench_predict_cmd(
    model: Annotated[str, typer.Option(help="Backbone.")] = "resnet34",
    cells: Annotated[int, typer.Option(help="Cells in the generated cohort.")] = 1000,
    size: Annotated[int, typer.Option(help="Crop and input size in px.")] = 80,
    batch_size: Annotated[int, typer.Option(help="Cells per batch.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU), 32 or bf16-mixed.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """Prediction cells/s end to end (store, raw export) against model-only; on CPU also onnxruntime and INT8."""
    from ..bench import bench_predict

    _ui.note(f"generating {cells} cells, then timing model-only and end-to-end prediction ...")
    result = bench_predict(
        model=model, cells=cells, size=size, batch_size=batch_size, device=device, precision=precision
    )
    _ui.bench_result(result, out)


@bench_app.command("counts")
def bench_counts_cmd(
    presets: Annotated[str, typer.Option(help="Synthetic presets, comma-separated.")] = "easy,medium,hard",
    patients: Annotated[int, typer.Option(help="Patients per preset (all counted out of fold).")] = 64,
    cells_per_patient: Annotated[int, typer.Option(help="Cells per patient.")] = 60,
    folds: Annotated[int, typer.Option(help="Patient-grouped folds.")] = 4,
    model: Annotated[str, typer.Option(help="Model trained in each fold.")] = "resnet18",
    channels: Annotated[str, typer.Option(help="Input channels.")] = "BF,DAPI,CK,CD45",
    epochs: Annotated[int, typer.Option(help="Training epochs per fold.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the cohorts and the training.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """Coverage, width, error and bias of each count estimator on held-out synthetic patients."""
    from ..bench import bench_counts
    from ..config import parse_list

    result = bench_counts(
        presets=tuple(parse_list(presets, "--presets") or ()),
        patients=patients,
        cells_per_patient=cells_per_patient,
        folds=folds,
        model=model,
        channels=tuple(parse_list(channels, "--channels") or ()),
        epochs=epochs,
        seed=seed,
        log=_ui.note,
    )
    _ui.bench_result(result, out)


@bench_app.command("features")
def bench_features_cmd(
    cells: Annotated[int, typer.Option(help="Cells in the generated dataset.")] = 2000,
    size: Annotated[int, typer.Option(help="Crop size in px.")] = 80,
    workers: WorkersOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
) -> None:
    """Segmentation and feature cells/s against a per-cell scikit-image loop, in one run."""
    from ..bench import bench_features

    _ui.note(f"rendering {cells} cells, then timing segmentation, features and the reference loop ...")
    result = bench_features(cells=cells, size=size, workers=workers or 0)
    _ui.bench_result(result, out)


@bench_app.command("saliency")
def bench_saliency_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset with ground-truth masks (ingested `synth --masks`).")],
    models: Annotated[
        str, typer.Option("--models", help="Bundles to explain, NAME=FOLDER comma-separated, e.g. all4=run/model.")
    ],
    methods: Annotated[str | None, typer.Option(help="Methods, comma-separated (default: all).")] = None,
    top: Annotated[int, typer.Option(help="The N most CTC-like cells explained per model.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the re-initialised models.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the table as Markdown here.")] = None,
) -> None:
    """Saliency methods scored against the true cell masks, with the randomisation checks, side by side."""
    from ..bench import bench_saliency
    from ..bench.saliency import markdown_table
    from ..config import parse_list, parse_map
    from ..io import atomic_write_text

    result = bench_saliency(
        dataset,
        parse_map(models, "--models") or {},
        methods=parse_list(methods, "--methods"),
        top=top,
        seed=seed,
        log=_ui.note,
    )
    _ui.bench_result(result, out)
    if markdown:
        atomic_write_text(markdown, markdown_table(result) + f"\ndefault: {result['default']}\n")


@bench_app.command("small-cohorts")
def bench_small_cohorts_cmd(
    seeds: Annotated[int, typer.Option(help="Cohorts (seeds) per size.")] = 5,
    epochs: Annotated[int, typer.Option(help="Training epochs of the CNN per fold.")] = 10,
    input_size: Annotated[int, typer.Option(help="Input size of the CNN in px.")] = 32,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the pooled ROC-AUC.")] = 1000,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the table as Markdown here.")] = None,
) -> None:
    """features_logreg, features_gbm and a small CNN cross-validated on cohorts of 24-60 cells: pooled ROC-AUC."""
    from ..bench import bench_small_cohorts

    result = bench_small_cohorts(
        seeds=seeds, epochs=epochs, input_size=input_size, n_boot=n_boot, markdown=markdown, log=_ui.note
    )
    _ui.bench_result(result, out)
