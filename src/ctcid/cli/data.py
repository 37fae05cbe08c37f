"""Commands on data: ``synth``, ``ingest``, ``info``, ``cohort``, ``segment`` and ``features``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..io import IngestOptions
from ..io import ingest as run_ingest
from ..segment import SegmentConfig
from ..synth import SynthConfig
from . import _ui
from ._app import DatasetArg, OverwriteOpt, WorkersOpt, app
from ._options import dataset_command, resolve_options, with_options

__all__ = ["cohort", "features", "info", "ingest", "segment", "synth"]

CacheOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Compute again even if cached.")]


@app.command()
@with_options(SynthConfig)
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create (DEPArray layout + labels.csv).")],
    workers: WorkersOpt = None,
    overwrite: OverwriteOpt = False,
    overrides: dict | None = None,
) -> None:
    """Generate a synthetic DEPArray-like cohort (BF, DAPI, CK, CD45), or slide scans, with ground truth."""
    from ..synth import write_export

    values = dict(overrides or {})
    if values.get("frames") and values.get("patients") is None and values.get("config") is None:
        values["patients"] = 1  # a synthetic slide scan is one slide unless --patients says otherwise
    cfg = resolve_options(SynthConfig, "synth", values)
    with _ui.progress("synth") as progress:
        write_export(out, cfg, workers=workers, overwrite=overwrite, progress=progress)
    _ui.out.print(f"wrote {cfg.patients * cfg.cells_per_patient} cells of {cfg.patients} patients to {out}")


def _ingested(result: Any, out: Path) -> str:
    h = result.header
    return (
        f"wrote {h['n_cells']} cells ({', '.join(f'{k} {v}' for k, v in h['classes'].items())}) "
        f"of {h['n_samples']} samples to {out}" + (f"; {len(result.rejected)} rejected" if result.rejected else "")
    )


@app.command()
@dataset_command(IngestOptions, run_ingest, _ingested)
def ingest(src: Annotated[Path, typer.Argument(help="Export folder, or a manifest CSV.")]) -> None:
    """Read an instrument export once into a packed cell dataset."""


@app.command()
def info(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder written by `ctcid ingest`.")],
    montage: Annotated[Path | None, typer.Option(help="Also write a PNG montage of example cells.")] = None,
    summary: Annotated[Path | None, typer.Option(help="Also write the per-sample table as CSV.")] = None,
) -> None:
    """Summarise a dataset: cells per sample and class, QC flags, an optional montage."""
    from ..report import describe_dataset

    desc = describe_dataset(dataset, montage_png=montage, summary_csv=summary)
    _ui.describe(desc)
    if montage:
        _ui.out.print(f"montage: {montage}")


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


@app.command()
@with_options(SegmentConfig)
def segment(
    dataset: DatasetArg,
    workers: WorkersOpt = None,
    overwrite: CacheOverwriteOpt = False,
    overrides: dict | None = None,
) -> None:
    """Segment each cell and its nucleus; masks go to DATASET/segmentation/ (failures are QC-flagged)."""
    from ..features import segment_dataset

    seg = _cached_step(segment_dataset, "segment", dataset, workers, overwrite, overrides)
    flagged = ", ".join(f"{k} {v}" for k, v in sorted(seg.header.get("flag_counts", {}).items())) or "none"
    _ui.out.print(f"masks of {len(seg.masks)} cells in {dataset / 'segmentation'}; QC flags: {flagged}")


@app.command()
@with_options(SegmentConfig)
def features(
    dataset: DatasetArg,
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.")] = None,
    workers: WorkersOpt = None,
    overwrite: CacheOverwriteOpt = False,
    overrides: dict | None = None,
) -> None:
    """Morphology, texture and fluorescence features per cell, cached in DATASET/features/features.parquet."""
    from ..features import compute_features
    from ..io import atomic_write_text

    table = _cached_step(compute_features, "features", dataset, workers, overwrite, overrides)
    if csv:
        atomic_write_text(csv, table.to_csv(index=False))
    failed = int(table["seg_flags"].str.contains("seg_no_cell").sum())
    _ui.out.print(
        f"{table.shape[1] - 4} features of {len(table)} cells in {dataset / 'features' / 'features.parquet'} "
        f"(columns and units in catalogue.csv); segmentation failed for {failed} cells"
    )


def _cached_step(
    step: Callable[..., Any],
    name: str,
    dataset: Path,
    workers: int | None,
    overwrite: bool,
    overrides: dict | None,
) -> Any:
    """Run ``segment_dataset`` or ``compute_features`` (``step``, cached in the dataset) on ``dataset`` with the
    segmentation options of ``--config`` and the flags, and a progress bar ``name``."""
    from ..io import CellDataset

    ds = CellDataset.open(dataset)
    cfg = resolve_options(SegmentConfig, "segment", overrides or {})
    with _ui.progress(name) as progress:
        return step(ds, cfg, workers=workers or 0, overwrite=overwrite, progress=progress)
