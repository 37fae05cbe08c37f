"""The ``ctcid`` command: a thin layer over functions a notebook user can call directly.

Each area's commands live in their own module (:mod:`.data`, :mod:`.models`, :mod:`.bench`, :mod:`.detect`,
:mod:`.review`, :mod:`.survival`), which registers them on the application when imported below.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated

import typer

from .._version import __version__
from ..config import ConfigError
from ..errors import CtcidError, cli_wording
from ..io._atomic import WRITE_ERRNOS
from . import _ui, bench, data, detect, models, review, survival  # noqa: F401  (each registers its commands)
from ._app import app, bench_app

__all__ = ["app", "bench_app", "run"]


def _version(value: bool) -> None:
    if value:
        _ui.out.print(f"ctcid {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find circulating tumour cells among leukocytes in single-cell images."""
    cli_wording(True)  # messages name flags (--overwrite), not Python arguments, while a command runs
    ctx.call_on_close(lambda: cli_wording(False))


def _notes(exc: BaseException) -> str:
    """What the error's notes add (e.g. a run folder kept for ``--resume``), on the same line."""
    return "".join(f"; {n}" for n in getattr(exc, "__notes__", ()))


def run(argv: list[str] | None = None) -> None:
    """Console entry point: user and environment errors print one line and exit 2, never a traceback.

    Exit codes: 0 success; 1 an unexpected error (a bug: its traceback is printed); 2 a user or environment error
    (a bad input, option or output, a full disk, a read-only output, an input that vanished), also a usage error
    reported by the command-line parser; 130 interrupted (Ctrl-C).
    """
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="ctcid", standalone_mode=True)
    except ConfigError as exc:
        sys.stderr.write(f"ctcid: error: {exc.for_cli()}{_notes(exc)}\n")
        sys.exit(exc.exit_code)
    except CtcidError as exc:
        sys.stderr.write(f"ctcid: error: {exc}{_notes(exc)}\n")
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS | {errno.ENOENT, errno.ESTALE}:
            raise
        gone = exc.errno in (errno.ENOENT, errno.ESTALE)
        what = "moved or removed while ctcid was running" if gone else os.strerror(exc.errno).lower()
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"ctcid: error: {where}{what}{_notes(exc)}\n")
        sys.exit(2)
    except KeyboardInterrupt as exc:
        kept = _notes(exc) or "; no partial output was kept"
        sys.stderr.write(f"ctcid: interrupted{kept}\n")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
