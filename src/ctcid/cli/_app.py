"""The typer application objects and the options every command shares.

Command modules (``main``, and one module per area such as ``survival`` or ``detect``) decorate these
objects; :mod:`ctcid.cli.main` imports every command module so that all commands are registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ConfigOpt",
    "DatasetArg",
    "JobsOpt",
    "JsonOutOpt",
    "NewDatasetArg",
    "OverwriteOpt",
    "WorkersOpt",
    "app",
    "bench_app",
]

app = typer.Typer(
    name="ctcid",
    help="Find circulating tumour cells among leukocytes in single-cell images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
bench_app = typer.Typer(
    help="Benchmarks: throughput against a baseline measured in the same run.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file with options; flags override it.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Worker processes (default: all cores).")]
DatasetArg = Annotated[Path, typer.Argument(help="Dataset folder (from `ctcid ingest`).")]
NewDatasetArg = Annotated[Path, typer.Argument(help="Dataset folder to create.")]
JobsOpt = Annotated[
    int,
    typer.Option(
        "--jobs",
        help="Runs trained at once, each in its own process: one GPU holds several small models; results are "
        "those of training them in turn.",
        min=1,
    ),
]
JsonOutOpt = Annotated[Path | None, typer.Option(help="Write the result as JSON here.")]
