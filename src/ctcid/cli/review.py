"""``ctcid review`` and its benchmarks (``ctcid bench active-learning``, ``ctcid bench review``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _ui
from ._app import JsonOutOpt, OverwriteOpt, WorkersOpt, app, bench_app

__all__ = ["bench_active_learning_cmd", "bench_review_cmd", "review"]


@app.command()
def review(
    predict_out: Annotated[Path, typer.Argument(help="A `ctcid predict` output folder.")],
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to bind; off localhost every request needs the printed token.")
    ] = "127.0.0.1",
    reviewer: Annotated[str | None, typer.Option(help="Your name in the decision log. [default: login]")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser window.")] = False,
    export: Annotated[
        Path | None,
        typer.Option(help="Write the reviewed labels to this CSV (and reviewed_counts.csv), then exit."),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Confirm or reject calls in the browser; every decision is saved at once beside the predictions."""
    from ..review import export_labels, serve

    if export is not None:
        labels, counts = export_labels(predict_out, export, overwrite=overwrite)
        cols = [
            "sample_id",
            "cells",
            "reviewed",
            "confirmed_ctc",
            "ctc_estimate",
            "ctc_estimate_lo",
            "ctc_estimate_hi",
        ]
        _ui.table(counts[cols], title="reviewed counts per sample (all columns in reviewed_counts.csv)")
        _ui.out.print(f"{len(labels)} labelled cells in {export}; counts in {predict_out / 'reviewed_counts.csv'}")
        return
    serve(predict_out, host=host, port=port, reviewer=reviewer, open_browser=not no_browser, log=_ui.note)


def _write(result: dict, out: Path | None) -> None:

    _ui.bench_result(result, out)


@bench_app.command("active-learning")
def bench_active_learning_cmd(
    patients: Annotated[int, typer.Option(help="Synthetic patients.")] = 24,
    cells_per_patient: Annotated[int, typer.Option(help="Cells per patient.")] = 300,
    test_patients: Annotated[int, typer.Option(help="Held-out patients for the F1.")] = 8,
    channels: Annotated[
        str, typer.Option(help="Channels of the feature table, e.g. BF or BF,DAPI,CK,CD45.")
    ] = "BF",
    strategies: Annotated[str, typer.Option(help="mixed, random and optionally uncertainty.")] = "mixed,random",
    seeds: Annotated[int, typer.Option(help="Simulations averaged.")] = 3,
    start: Annotated[int, typer.Option(help="Labels before the first round.")] = 40,
    growth: Annotated[float, typer.Option(help="Labels grow by this factor each round.")] = 1.5,
    tolerance: Annotated[
        float, typer.Option(help="F1 within this of the all-labels F1 counts as reached.")
    ] = 0.01,
    workers: WorkersOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Write NAME.json with the curve NAME.csv and plot NAME.png beside it.")
    ] = None,
) -> None:
    """Labels needed to reach the all-labels F1: the review queue against random labelling (simulated reviewer)."""
    from ..bench import machine_info
    from ..config import parse_list
    from ..review.active import simulate_active_learning, write_active_learning

    result, curve = simulate_active_learning(
        patients=patients,
        cells_per_patient=cells_per_patient,
        test_patients=test_patients,
        channels=tuple(parse_list(channels, "--channels") or ["BF"]),
        strategies=tuple(parse_list(strategies, "--strategies") or []),
        seeds=tuple(range(seeds)),
        start=start,
        growth=growth,
        tolerance=tolerance,
        workers=workers or 0,
        log=_ui.note,
    )
    result["machine"] = machine_info()
    _ui.table(curve, title="F1 on held-out patients (mean over seeds)")
    if out:
        write_active_learning(result, curve, out)
        _ui.note(f"curve {out.with_suffix('.csv')}, plot {out.with_suffix('.png')}")
    _write(result, out)


@bench_app.command("review")
def bench_review_cmd(
    cells: Annotated[int, typer.Option(help="Predicted cells.")] = 100_000,
    samples: Annotated[int, typer.Option(help="Samples they belong to.")] = 40,
    decisions: Annotated[int, typer.Option(help="Decisions timed.")] = 500,
    size: Annotated[int, typer.Option(help="Crop size in px.")] = 48,
    out: JsonOutOpt = None,
) -> None:
    """Review app latency on a large predict output: time to the first page, per-decision p99."""
    from ..bench import machine_info
    from ..review import bench_review

    _ui.note(f"writing a {cells}-cell predict output, then timing the review app over HTTP ...")
    result = bench_review(cells=cells, samples=samples, decisions=decisions, size=size)
    result["machine"] = machine_info()
    _write(result, out)
