"""The error a person can act on.

Every problem with a user's input (a file, an option, a dataset folder) is raised as
:class:`CtcidError`. The command line prints its one-line message and exits with code 2;
programming errors are left to raise normally so that they keep their traceback. A message that asks for an
argument names it with :func:`arg`, so that it reads ``overwrite=True`` in Python and ``--overwrite`` in a shell.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CtcidError", "InputError", "arg", "cli_wording"]

_CLI_WORDING = [False]


def cli_wording(on: bool = True) -> None:
    """Word the arguments that messages ask for as command-line flags (``--overwrite``) rather than as the
    arguments of a Python call (``overwrite=True``). The ``ctcid`` command turns it on for the length of a
    command; a notebook or script keeps the Python wording."""
    _CLI_WORDING[0] = bool(on)


def arg(name: str, value: Any = True, *, flag: str | None = None) -> str:
    """How a message names an argument to pass: as a Python argument, or, inside the ``ctcid`` command, as its
    flag (``flag``, or ``--`` plus ``name`` with dashes).

    ``value`` is what to pass: ``True`` (or ``False`` with the switch's ``--no-`` flag) names a switch, ``...``
    the argument alone; on the command line a list is joined with commas and a mapping written ``KEY=VALUE``.

    >>> arg("overwrite"), arg("n_folds", 3, flag="--folds"), arg("pattern", ...)
    ('overwrite=True', 'n_folds=3', 'pattern')
    >>> cli_wording(True)
    >>> arg("overwrite"), arg("n_folds", 3, flag="--folds"), arg("channels", ["DAPI", "CK"])
    ('--overwrite', '--folds 3', '--channels DAPI,CK')
    >>> cli_wording(False)
    """
    if not _CLI_WORDING[0]:
        return name if value is ... else f"{name}={value!r}"
    flag = flag or "--" + name.replace("_", "-")
    if isinstance(value, bool) or value is ...:
        return flag
    if isinstance(value, dict):
        text = ",".join(f"{k}={v}" for k, v in value.items())
    else:
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return f"{flag} {text}"


class CtcidError(Exception):
    """A user-facing error: bad input, bad option, or an output that cannot be written.

    Parameters
    ----------
    message
        What is wrong and, where possible, what to do about it.
    path
        The file or folder the problem is about; it is put at the front of the message.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        self.reason = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(CtcidError):
    """A single input file (or cell) that cannot be read: corrupt, truncated, wrong shape, ..."""
