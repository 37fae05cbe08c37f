"""The ``ctcid`` command: a thin layer over functions a notebook user can call directly."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CtcidError
from . import _ui
from ._app import ConfigOpt, OverwriteOpt, WorkersOpt, app, bench_app
from ._train_opts import build_config, with_train_options

if TYPE_CHECKING:
    import pandas as pd


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        _ui.out.print(f"ctcid {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find circulating tumour cells among leukocytes in single-cell images."""


# ----------------------------------------------------------------------------------------------- synth


def _synth(out: Path, config, workers: int | None, overwrite: bool) -> Path:
    from ..io import atomic_dir
    from ..synth import generate_cohort

    config.validate()
    total = config.patients * config.cells_per_patient
    with atomic_dir(out, overwrite) as tmp, _ui.progress("synth", total) as update:
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            update(done)

        generate_cohort(tmp, config, workers=workers, progress=step)
    return out


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create (DEPArray layout + labels.csv).")],
    patients: Annotated[int | None, typer.Option(help="Number of patients (samples). [default: 12]")] = None,
    cells_per_patient: Annotated[int | None, typer.Option(help="Cells per patient. [default: 200]")] = None,
    ctc_fraction: Annotated[
        float | None, typer.Option(help="Mean CTC prevalence over patients. [default: 0.1]")
    ] = None,
    difficulty: Annotated[str | None, typer.Option(help="easy, medium or hard. [default: medium]")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; same seed, same files. [default: 0]")] = None,
    size: Annotated[int | None, typer.Option(help="Crop size in px. [default: 80]")] = None,
    label_noise: Annotated[float | None, typer.Option(help="Fraction of labels flipped. [default: 0]")] = None,
    masks: Annotated[
        bool | None, typer.Option("--masks/--no-masks", help="Also write ground-truth masks.npy.")
    ] = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Generate a synthetic DEPArray-like cohort (BF, DAPI, CK, CD45) with ground truth."""
    from ..config import resolve
    from ..synth import SynthConfig

    cfg = resolve(
        SynthConfig,
        config,
        "synth",
        dict(
            patients=patients,
            cells_per_patient=cells_per_patient,
            ctc_fraction=ctc_fraction,
            difficulty=difficulty,
            seed=seed,
            size=size,
            label_noise=label_noise,
            masks=masks,
        ),
    )
    _synth(out, cfg, workers, overwrite)
    _ui.out.print(f"wrote {cfg.patients * cfg.cells_per_patient} cells of {cfg.patients} patients to {out}")


# ----------------------------------------------------------------------------------------------- ingest


def _ingest(src: Path, out: Path, options, overwrite: bool):
    from ..io import ingest as run_ingest

    with _ui.progress("ingest") as update:
        return run_ingest(src, out, options, overwrite=overwrite, progress=update, log=_ui.note)


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Export folder, or a manifest CSV.")],
    out: Annotated[Path, typer.Argument(help="Dataset folder to create.")],
    layout: Annotated[str | None, typer.Option(help="auto, deparray, manifest, stack or class-folders.")] = None,
    channels: Annotated[str | None, typer.Option(help="Channels to keep, in order, e.g. BF,DAPI,CK,CD45.")] = None,
    channel_map: Annotated[
        str | None, typer.Option(help="Rename channels, e.g. FITC=CK,PE=CD45 or R=CK,G=CD45.")
    ] = None,
    label_map: Annotated[
        str | None, typer.Option(help="Fold labels/folders into ctc/wbc, e.g. noCTC=wbc.")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels CSV (cell_id, label[, sample_id]).")] = None,
    size: Annotated[int | None, typer.Option(help="Crop size in px (default: most common size).")] = None,
    fit: Annotated[str | None, typer.Option(help="pad (centre pad/crop) or resize (scale recorded).")] = None,
    pixel_size: Annotated[float | None, typer.Option(help="Pixel size in um. [default: 0.64]")] = None,
    channel_axis: Annotated[
        str | None, typer.Option(help="For stacks: auto, first (CxHxW) or last (HxWxC).")
    ] = None,
    sample_regex: Annotated[
        str | None, typer.Option(help="Regex whose first group in a file name is the sample.")
    ] = None,
    on_error: Annotated[
        str | None, typer.Option(help="stop at the first bad file, or skip it (rejected.csv).")
    ] = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Read an instrument export once into a packed cell dataset."""
    from ..config import parse_list, parse_map, resolve
    from ..io import IngestOptions

    opts = resolve(
        IngestOptions,
        config,
        "ingest",
        dict(
            layout=layout,
            channels=parse_list(channels, "--channels"),
            channel_map=parse_map(channel_map, "--channel-map"),
            label_map=parse_map(label_map, "--label-map"),
            labels=str(labels) if labels else None,
            size=size,
            fit=fit,
            pixel_size_um=pixel_size,
            channel_axis=channel_axis,
            sample_regex=sample_regex,
            on_error=on_error,
            workers=workers,
        ),
    )
    result = _ingest(src, out, opts, overwrite)
    h = result.header
    _ui.out.print(
        f"wrote {h['n_cells']} cells ({', '.join(f'{k} {v}' for k, v in h['classes'].items())}) "
        f"of {h['n_samples']} samples to {out}" + (f"; {len(result.rejected)} rejected" if result.rejected else "")
    )


# ------------------------------------------------------------------------------------------- train / cv / ablate

ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]


def _metric_line(m: dict) -> str:
    keys = ("f1", "precision", "recall", "specificity", "pr_auc", "roc_auc")
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m and m[k] == m[k])


@app.command()
@with_train_options
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (from `ctcid ingest`).")],
    out: Annotated[Path, typer.Argument(help="Run folder to create.")],
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    train_values: dict | None = None,
) -> None:
    """Train one model: patients split into training and validation; threshold and temperature from validation."""
    from ..evaluate import train_val_split
    from ..io import CellDataset
    from ..train import fit

    cfg = build_config(train_values or {})
    ds = CellDataset.open(dataset)
    split = train_val_split(
        ds.table["sample_id"].to_numpy(), ds.labels(), val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    res = fit(ds, split, cfg, out, resume=resume, overwrite=overwrite, log=_ui.note)
    _ui.out.print(f"validation ({len(split.val)} cells): {_metric_line(res.val_metrics)}")
    _ui.out.print(f"threshold {res.threshold:.3f}, temperature {res.temperature:.3f}, best epoch {res.best_epoch}")
    _ui.out.print(f"model bundle: {res.bundle}")


def _print_table(table: pd.DataFrame, path: Path) -> None:
    """One column per variant, one row per metric (readable in a narrow terminal)."""
    import pandas as pd

    rows = {"folds": table["folds"].astype(str).tolist()}
    for m in ("f1", "precision", "recall", "specificity", "mcc", "pr_auc", "accuracy"):
        rows[f"{m} (mean ± sd)"] = [
            f"{a:.3f} ± {b:.3f}" for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"], strict=True)
        ]
    rows["pooled F1 [95% CI]"] = [
        f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
        for v, lo, hi in zip(table["pooled_f1"], table["pooled_f1_lo"], table["pooled_f1_hi"], strict=True)
    ]
    rows["count MAE / patient"] = [f"{v:.2f}" for v in table["count_mae"]]
    shown = pd.DataFrame(rows, index=table["variant"]).T.reset_index(names="metric")
    _ui.table(shown, title="held-out patients, patient-grouped folds")
    _ui.out.print(f"table: {path / 'table.md'} (and table.csv, per_fold.csv, comparison.png)")


@app.command()
@with_train_options
def cv(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (from `ctcid ingest`).")],
    out: Annotated[Path, typer.Argument(help="Folder for the comparison.")],
    models: Annotated[str, typer.Option(help="Models to compare, comma-separated.")] = "resnet34",
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    train_values: dict | None = None,
) -> None:
    """Compare architectures with patient-grouped K-fold cross-validation: mean and spread over folds."""
    from dataclasses import replace

    from ..config import parse_list
    from ..io import CellDataset
    from ..train.cv import run_variants

    cfg = build_config(train_values or {})
    ds = CellDataset.open(dataset)
    variants = {m: replace(cfg, model=m) for m in parse_list(models, "--models") or []}
    for v in variants.values():
        v.validate()
    res = run_variants(
        ds,
        variants,
        out,
        base=cfg,
        title="Architecture comparison",
        resume=resume,
        overwrite=overwrite,
        log=_ui.note,
    )
    _print_table(res.table, out)


@app.command()
@with_train_options
def ablate(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (from `ctcid ingest`).")],
    out: Annotated[Path, typer.Argument(help="Folder for the ablation.")],
    system: Annotated[str, typer.Option(help="Which system's table: A or B.")] = "A",
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    train_values: dict | None = None,
) -> None:
    """System A's table (BF only; each augmentation family; all three; + DAPI in training) or System B's
    (image CNN, features GBM, features MLP, dual branch with concatenation and with gated fusion)."""
    from ..io import CellDataset
    from ..train.cv import run_variants, system_a_variants, system_b_variants

    system = system.upper()
    if system not in ("A", "B"):
        raise CtcidError(f"--system must be A or B, got {system!r}")
    values = dict(train_values or {})
    ds = CellDataset.open(dataset)
    if system == "B" and values.get("channels") is None:
        values["channels"] = ",".join(ds.channels)
    cfg = build_config(values)
    variants = system_a_variants(cfg) if system == "A" else system_b_variants(cfg)
    title = (
        "System A ablation (bright field at test time)"
        if system == "A"
        else f"System B ablation (channels {', '.join(cfg.channels)})"
    )
    res = run_variants(
        ds,
        variants,
        out,
        base=cfg,
        title=title,
        resume=resume,
        overwrite=overwrite,
        log=_ui.note,
    )
    _print_table(res.table, out)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model bundle folder (a run's model/).")],
    dataset: Annotated[Path, typer.Argument(help="Labelled dataset folder.")],
    out: Annotated[Path, typer.Argument(help="Folder for metrics, plots and predictions.")],
    batch_size: Annotated[int, typer.Option(help="Cells per inference batch.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of patients.")] = 1000,
    overwrite: OverwriteOpt = False,
) -> None:
    """Apply a bundle to a labelled dataset: metrics with patient-bootstrap intervals, counts, plots."""
    import numpy as np

    from ..io import CellDataset, atomic_dir
    from ..models import check_compatible, load_bundle
    from ..predict import bundle_logits
    from ..train.engine import predictions_frame, write_metrics

    bundle = load_bundle(model)
    ds = CellDataset.open(dataset)
    check_compatible(bundle.meta, ds)
    cells = np.flatnonzero(ds.labels() >= 0)
    if len(cells) == 0:
        raise CtcidError("the dataset has no labelled cells to evaluate against", dataset)
    m = bundle.meta
    with _ui.progress("predict", len(cells)) as update:
        logits = bundle_logits(bundle, ds, cells, batch_size=batch_size, device=device, progress=update)
    frame = predictions_frame(ds, cells, logits, m.temperature, m.threshold, m.model_id)
    with atomic_dir(out, overwrite) as tmp:
        from ..io import atomic_write_text

        atomic_write_text(tmp / "predictions.csv", frame.to_csv(index=False))
        summary = write_metrics(tmp, frame, m.threshold, m.temperature, n_boot, 0)
    rows = [
        {"metric": k, "value": v["value"], "lo": v["lo"], "hi": v["hi"]}
        for k, v in summary["metrics"].items()
        if k in ("f1", "precision", "recall", "specificity", "balanced_accuracy", "mcc", "roc_auc", "pr_auc")
    ]
    import pandas as pd

    _ui.table(pd.DataFrame(rows).round(3), title=f"{m.model_id} on {dataset} (95% CI, patients resampled)")
    _ui.out.print(
        f"count MAE per patient {summary['counts'].get('count_mae', float('nan')):.2f}; results in {out}"
    )


# ----------------------------------------------------------------------------------------------- predict


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Model bundle folder (a run's model/).")],
    input: Annotated[Path, typer.Argument(help="A dataset folder, or a raw export folder to ingest on the fly.")],
    out: Annotated[Path, typer.Argument(help="Folder for predictions.parquet/.csv, counts.csv, predict.json.")],
    engine: Annotated[str, typer.Option(help="torch, or onnx (onnxruntime; needs `ctcid export`).")] = "torch",
    batch_size: Annotated[int, typer.Option(help="Cells per inference batch.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (torch engine).")] = "auto",
    devices: Annotated[str, typer.Option(help="Data-parallel processes (GPUs) per node, e.g. 4.")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy for several devices (ddp).")] = "auto",
    num_nodes: Annotated[int, typer.Option(help="Nodes for multi-node prediction.")] = 1,
    overwrite: OverwriteOpt = False,
) -> None:
    """Apply a bundle to new samples: calibrated p_ctc, calls, uncertainty and CTC counts per sample."""
    from ..predict import predict as run_predict

    active: list = []

    def progress(label: str, total: int):
        if total == 0:
            return None
        ctx = _ui.progress(label, total)
        update = ctx.__enter__()
        active.append(ctx)
        return update

    try:
        res = run_predict(
            model,
            input,
            out,
            engine=engine,
            batch_size=batch_size,
            device=device,
            devices=int(devices) if devices.isdigit() else devices,
            strategy=strategy,
            num_nodes=num_nodes,
            overwrite=overwrite,
            log=_ui.note,
            progress=progress,
        )
    finally:
        for ctx in active:
            ctx.__exit__(None, None, None)
    if res is None:  # a data-parallel worker: the first process reports
        return
    _ui.table(res.counts, title=f"CTCs per sample ({len(res.predictions)} cells, {res.seconds:.1f} s)")
    _ui.out.print(f"results in {out}")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Model bundle folder (a run's model/).")],
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="ONNX file (default: model.onnx in the bundle).")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Also a statically quantised INT8 model.")] = False,
    dataset: Annotated[
        Path | None, typer.Option(help="Dataset for the checks and INT8 calibration (default: the training one).")
    ] = None,
    calibration_cells: Annotated[int, typer.Option(help="Training cells that calibrate INT8.")] = 256,
) -> None:
    """Export a bundle to ONNX (metadata embedded), checked against PyTorch; optionally INT8."""
    from ..export import export_onnx

    if format != "onnx":
        raise CtcidError(f"--format must be onnx, got {format!r}")
    report = export_onnx(model, out, int8=int8, dataset=dataset, calibration_cells=calibration_cells)
    _ui.out.print(json.dumps(report, indent=2))


@app.command()
def explain(
    model: Annotated[Path, typer.Argument(help="Model bundle folder (a run's model/).")],
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[
        Path, typer.Argument(help="Folder for one PNG per cell (and attributions for feature models).")
    ],
    cells: Annotated[str | None, typer.Option(help="Cell ids, comma-separated.")] = None,
    top: Annotated[int, typer.Option(help="Without --cells: the N most CTC-like cells.")] = 16,
    overwrite: OverwriteOpt = False,
) -> None:
    """Grad-CAM overlays (image models) and feature attributions (feature models) for chosen cells."""
    import warnings

    import numpy as np
    import pandas as pd

    from ..config import parse_list
    from ..explain import cell_panel_png, gradcam_maps
    from ..explain.features import cell_attributions
    from ..io import CellDataset, atomic_dir
    from ..models import check_compatible, load_bundle
    from ..predict import bundle_features, bundle_logits

    bundle = load_bundle(model)
    ds = CellDataset.open(dataset)
    check_compatible(bundle.meta, ds)
    if cells:
        wanted = parse_list(cells, "--cells") or []
        ids = ds.table["cell_id"].astype(str).to_numpy()
        missing = [c for c in wanted if c not in set(ids)]
        if missing:
            raise CtcidError(f"no cell(s) {', '.join(missing[:5])} in the dataset", dataset)
        rows = np.array([int(np.flatnonzero(ids == c)[0]) for c in wanted])
    else:
        logits = bundle_logits(bundle, ds, np.arange(len(ds)), device="cpu")
        rows = np.argsort(-logits, kind="stable")[:top]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saliency = gradcam_maps(bundle, ds, rows)
    pixels = ds.images(rows)
    logit = bundle_logits(bundle, ds, rows, device="cpu")
    from ..evaluate import apply_temperature

    p = apply_temperature(logit, bundle.meta.temperature)
    with atomic_dir(out, overwrite) as tmp:
        table = ds.table.iloc[rows][["cell_id", "sample_id", "label"]].assign(p_ctc=p).reset_index(drop=True)
        for i, r in enumerate(rows):
            png = cell_panel_png(pixels[i], ds.channels, None if saliency is None else saliency[i])
            sample, cell = str(ds.table["sample_id"].iloc[r]), str(ds.table["cell_id"].iloc[r])
            (tmp / f"{cell if cell.startswith(sample) else f'{sample}_{cell}'}.png").write_bytes(png)
        if saliency is not None:
            np.save(tmp / "saliency.npy", saliency)
        feats = bundle_features(bundle.meta, ds)
        if feats is not None:
            attr = cell_attributions(bundle, ds, rows, feats)
            names = bundle.meta.features["names"]
            pd.concat([table, pd.DataFrame(attr, columns=names)], axis=1).to_csv(
                tmp / "feature_attributions.csv", index=False
            )
        table.to_csv(tmp / "cells.csv", index=False)
    _ui.out.print(f"{len(rows)} cells explained in {out}")


@app.command()
def report(
    source: Annotated[Path, typer.Argument(help="A `ctcid predict` output folder or a training run folder.")],
    out_html: Annotated[Path, typer.Argument(help="The HTML file to write (self-contained).")],
    top: Annotated[int, typer.Option(help="Cells in the candidate and error galleries.")] = 48,
    queue: Annotated[int, typer.Option(help="Cells in the uncertain-first review queue.")] = 24,
    overwrite: OverwriteOpt = False,
) -> None:
    """One self-contained HTML report for operator review: counts, galleries, QC, metrics, model card."""
    from ..report import write_report

    if out_html.exists() and not overwrite:
        raise CtcidError("already exists; choose another file or pass --overwrite", out_html)
    write_report(source, out_html, top=top, queue=queue)
    _ui.out.print(f"report: {out_html}")


# ----------------------------------------------------------------------------------------------- features


def _seg_config(threshold: str, nucleus_channel: str) -> Any:
    from ..segment import SegmentConfig

    cfg = SegmentConfig(threshold=threshold, nucleus_channel=nucleus_channel)
    cfg.validate()
    return cfg


@app.command()
def segment(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (from `ctcid ingest`).")],
    threshold: Annotated[str, typer.Option(help="otsu or li.")] = "otsu",
    nucleus_channel: Annotated[str, typer.Option(help="Nuclear stain (else bright field).")] = "DAPI",
    workers: WorkersOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Segment again even if cached.")] = False,
) -> None:
    """Segment each cell and its nucleus; masks go to DATASET/segmentation/ (failures are QC-flagged)."""
    from ..features import segment_dataset
    from ..io import CellDataset

    ds = CellDataset.open(dataset)
    cfg = _seg_config(threshold, nucleus_channel)
    with _ui.progress("segment", len(ds)) as update:
        seg = segment_dataset(ds, cfg, workers=workers or 0, overwrite=overwrite, progress=update)
    counts = seg.header.get("flag_counts", {})
    flagged = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    _ui.out.print(f"masks of {len(ds)} cells in {dataset / 'segmentation'}; QC flags: {flagged}")


@app.command()
def features(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (from `ctcid ingest`).")],
    threshold: Annotated[str, typer.Option(help="Segmentation threshold: otsu or li.")] = "otsu",
    nucleus_channel: Annotated[str, typer.Option(help="Nuclear stain (else bright field).")] = "DAPI",
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
    workers: WorkersOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Compute again even if cached.")] = False,
) -> None:
    """Morphology, texture and fluorescence features per cell, cached in DATASET/features/features.parquet."""
    from ..features import compute_features
    from ..io import CellDataset, atomic_write_text

    ds = CellDataset.open(dataset)
    cfg = _seg_config(threshold, nucleus_channel)
    with _ui.progress("features", len(ds)) as update:
        table = compute_features(ds, cfg, workers=workers or 0, overwrite=overwrite, progress=update)
    if csv:
        atomic_write_text(csv, table.to_csv(index=False))
    n_feat = table.shape[1] - 4
    failed = int(table["seg_flags"].str.contains("seg_no_cell").sum())
    _ui.out.print(
        f"{n_feat} features of {len(table)} cells in {dataset / 'features' / 'features.parquet'} "
        f"(columns and units in catalogue.csv); segmentation failed for {failed} cells"
    )


@app.command()
def cohort(
    out: Annotated[Path, typer.Argument(help="Cohort folder to write (holds shards.json only).")],
    datasets: Annotated[
        list[Path], typer.Argument(help="Dataset folders (shards): one per centre, run or export.")
    ],
    overwrite: OverwriteOpt = False,
) -> None:
    """Join datasets with the same channels, crop and pixel size into one cohort every command reads."""
    from ..io import CellDataset, write_cohort

    write_cohort(out, datasets, overwrite=overwrite)
    ds = CellDataset.open(out)
    _ui.out.print(f"cohort {out}: {len(ds)} cells, {ds.header['n_samples']} samples in {len(datasets)} shards")


# ----------------------------------------------------------------------------------------------- info


def _info(dataset: Path, montage_png: Path | None, summary_csv: Path | None) -> None:
    from ..io import CellDataset, atomic_write_text
    from ..report import dataset_summary, montage, qc_summary

    ds = CellDataset.open(dataset)
    h = ds.header
    _ui.out.print(
        f"{dataset}: {len(ds)} cells, {h['n_samples']} samples, channels {', '.join(ds.channels)}, "
        f"{ds.crop_size[0]}x{ds.crop_size[1]} px at {ds.pixel_size_um} um/px"
    )
    _ui.out.print(
        f"layout {h['source']['layout']}, fingerprint {ds.fingerprint[:23]}..., {h['rejected']} rejected"
    )
    summary = dataset_summary(ds)
    _ui.table(summary, title="cells per sample and class")
    qc = qc_summary(ds)
    if len(qc):
        _ui.table(qc, title="QC flags")
    if summary_csv:
        atomic_write_text(summary_csv, summary.to_csv(index=False))
    if montage_png:
        montage(ds, montage_png)
        _ui.out.print(f"montage: {montage_png}")


@app.command()
def info(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder written by `ctcid ingest`.")],
    montage: Annotated[Path | None, typer.Option(help="Also write a PNG montage of example cells.")] = None,
    summary: Annotated[Path | None, typer.Option(help="Also write the per-sample table as CSV.")] = None,
) -> None:
    """Summarise a dataset: cells per sample and class, QC flags, an optional montage."""
    _info(dataset, montage, summary)


# ----------------------------------------------------------------------------------------------- demo


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
    """Run the main job end to end on a synthetic cohort: synth, ingest, summary, patient-grouped CV."""
    import shutil

    from ..io import CellDataset, IngestOptions
    from ..synth import SynthConfig
    from ..train import TrainConfig
    from ..train.cv import run_variants

    if out.exists():
        if not overwrite:
            raise CtcidError("already exists; choose another folder or pass --overwrite", out)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg = SynthConfig(patients=patients, cells_per_patient=cells_per_patient, difficulty=difficulty, seed=seed)
    _ui.note(f"[1/6] synthetic DEPArray export: {patients} patients x {cells_per_patient} cells ({difficulty})")
    _synth(out / "export", cfg, None, False)
    _ui.note("[2/6] ingest into a cell dataset")
    _ingest(out / "export", out / "dataset", IngestOptions(), False)
    _ui.note("[3/6] dataset summary")
    _info(out / "dataset", out / "montage.png", out / "summary.csv")
    _ui.note(f"[4/6] {folds}-fold patient-grouped CV of a ResNet-18 on BF, DAPI, CK and CD45")
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
    res = run_variants(
        CellDataset.open(out / "dataset"),
        {"resnet18 4 channels": train_cfg},
        out / "cv",
        base=train_cfg,
        title="ctcid demo: patient-grouped CV on a synthetic cohort",
        log=_ui.note,
    )
    _print_table(res.table, out / "cv")
    from ..predict import predict as run_predict
    from ..report import write_report

    new = SynthConfig(
        patients=3, cells_per_patient=cells_per_patient, difficulty=difficulty, seed=seed + 1, sample_prefix="N"
    )
    _ui.note("[5/6] three new patients (N01-N03): raw export, predicted with the fold-1 model")
    _synth(out / "new-patients", new, None, False)
    model = out / "cv" / "resnet18 4 channels" / "fold0" / "model"
    with _ui.progress("predict", new.patients * new.cells_per_patient) as update:
        pred = run_predict(
            model, out / "new-patients", out / "predict", progress=lambda label, n: update if n else None
        )
    _ui.table(pred.counts, title="CTCs per new patient")
    _ui.note("[6/6] the operator report")
    report = write_report(out / "predict", out / "report.html")
    _ui.out.print(
        f"\nresults in {out}/: export/ (raw images), dataset/ (cell dataset), summary.csv, montage.png, "
        "cv/ (folds, per-fold runs with model bundles, table.md, plots), new-patients/ and predict/ "
        "(predictions.csv, counts.csv)"
    )
    _ui.out.print(f"report: {report}")
    _ui.out.print(f"next: System A's bright-field table with `ctcid ablate {out}/dataset {out}/ablate`")


# ----------------------------------------------------------------------------------------------- bench


def _bench_result(result: dict, out: Path | None) -> None:
    """Print a benchmark result and, with ``--out``, write it as JSON (atomically)."""
    from ..io import atomic_write_text

    _ui.out.print(json.dumps(result, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        _ui.out.print(f"wrote {out}")


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
    _bench_result(result, out)


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
    _bench_result(result, out)


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
    _bench_result(result, out)


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
    _bench_result(result, out)


# ----------------------------------------------------------------------------------------------- other modules

# Commands defined in their own modules register themselves on ``app`` when imported (one line each).

# ----------------------------------------------------------------------------------------------- entry


def run(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback.

    Usage errors (unknown option, missing argument) are reported by the command-line parser,
    also with exit code 2.
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="ctcid", standalone_mode=True)
    except CtcidError as exc:
        sys.stderr.write(f"ctcid: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("ctcid: interrupted; no partial output was kept\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
