"""The ``ctcid`` command: a thin layer over functions a notebook user can call directly.

Each area's commands live in their own module (:mod:`.data`, :mod:`.models`, :mod:`.bench`, :mod:`.detect`,
:mod:`.review`, :mod:`.survival`), which registers them on the application when imported below.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .._version import __version__
from ..config import ConfigError
from ..errors import CtcidError
from . import _ui, bench, data, detect, models, review, survival  # noqa: F401  (each registers its commands)
from ._app import app, bench_app

__all__ = ["app", "bench_app", "run"]


def _version(value: bool) -> None:
    if value:
        _ui.out.print(f"ctcid {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find circulating tumour cells among leukocytes in single-cell images."""


def run(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback.

    Usage errors (unknown option, missing argument) are reported by the command-line parser,
    also with exit code 2.
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="ctcid", standalone_mode=True)
    except ConfigError as exc:
        sys.stderr.write(f"ctcid: error: {exc.for_cli()}\n")
        sys.exit(exc.exit_code)
    except CtcidError as exc:
        sys.stderr.write(f"ctcid: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("ctcid: interrupted; no partial output was kept\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
