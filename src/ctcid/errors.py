"""The error a person can act on.

Every problem with a user's input (a file, an option, a dataset folder) is raised as
:class:`CtcidError`. The command line prints its one-line message and exits with code 2;
programming errors are left to raise normally so that they keep their traceback.
"""

from __future__ import annotations

import os

__all__ = ["CtcidError", "InputError"]


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
