"""``ctcid survival``: do the CTC counts predict survival, and as well as the reference counts?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _ui
from ._app import OverwriteOpt, app

__all__ = ["survival"]


@app.command()
def survival(
    clinical: Annotated[
        Path, typer.Argument(help="Clinical CSV: sample_id, time_months, event (1/0), covariates.")
    ],
    out: Annotated[Path, typer.Argument(help="Folder to create (survival.json, survival.md, figures).")],
    counts: Annotated[
        list[str],
        typer.Option(
            "--counts",
            metavar="NAME=FILE",
            help="NAME=COUNTS.csv, repeatable; the first is the reference (e.g. manual=..., then predicted=...).",
        ),
    ],
    count_column: Annotated[
        list[str] | None,
        typer.Option(
            "--count-column",
            metavar="[NAME=]COLUMN",
            help="COLUMN for every source, or NAME=COLUMN for one. [default: ctc_estimate, called_ctc, "
            "predicted_ctc, or the only numeric column]",
        ),
    ] = None,
    cutoff: Annotated[float, typer.Option(help="Cut-off in CTCs per 7.5 mL (high: at or above).")] = 5.0,
    covariates: Annotated[
        str | None, typer.Option(help="Clinical columns to adjust the Cox models for, e.g. age,stage.")
    ] = None,
    time_column: Annotated[str, typer.Option(help="Follow-up column (months).")] = "time_months",
    event_column: Annotated[str, typer.Option(help="Event column (1 = event, 0 = censored).")] = "event",
    find_cutoff: Annotated[
        bool, typer.Option("--find-cutoff", help="Also report the data-driven cut-off (optimistic).")
    ] = False,
    round_counts: Annotated[
        bool,
        typer.Option("--round-counts/--no-round-counts", help="Round counts to whole numbers before the cut-off."),
    ] = True,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of patients (0: no intervals).")] = 1000,
    margin: Annotated[float, typer.Option(help="Non-inferiority margin of the C-index difference.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Kaplan-Meier, log-rank, Cox and C-index per source of counts, and each source against the first."""
    from ..survival import analyse_survival, parse_count_columns, parse_named, summary_table, verdict

    sources = parse_named(counts, "--counts")
    res = analyse_survival(
        clinical,
        sources,
        out,
        overwrite=overwrite,
        cutoff=cutoff,
        covariates=[c.strip() for c in (covariates or "").split(",") if c.strip()],
        count_column=parse_count_columns(count_column, sources),
        time_column=time_column,
        event_column=event_column,
        find_cutoff=find_cutoff,
        round_counts=round_counts,
        n_boot=n_boot,
        margin=margin,
        seed=seed,
    )
    r = res.result
    for note in r["notes"]:
        _ui.note(f"note: {note}")
    _ui.table(summary_table(r, brief=True), title=f"{r['patients']} patients, {r['events']} events")
    for comp in r["comparisons"].values():
        _ui.out.print(verdict(comp))
    _ui.out.print(f"wrote {out}")
