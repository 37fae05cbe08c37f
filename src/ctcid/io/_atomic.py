"""Outputs that appear only when complete.

A folder is built under a hidden sibling name and renamed into place at the end; a file is
written to a temporary sibling and renamed. A crash (even SIGKILL) leaves at most a hidden
``.NAME.partial-XXXX`` folder, which no ctcid command accepts as a result.

The environment can stop a write too: a full disk or quota, a read-only or unwritable output. Such an error is
one line naming the output and the file being written (``OUT: no space left on device while writing
pixels.u16``), and the partial output is removed like any other failure's (:func:`output_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import CtcidError, arg

__all__ = [
    "WRITE_ERRNOS",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "output_errors",
    "write_error",
]

#: ``errno`` values that say the environment stopped a write: a full disk or quota, a file too large for the file
#: system, a read-only or unwritable output, an I/O error of the device.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


def write_error(
    exc: OSError, out: str | os.PathLike[str], tmp: str | os.PathLike[str] | None = None
) -> CtcidError:
    """The one-line error for an :class:`OSError` of the environment met while writing ``out``: the reason in
    words, then the file (relative to ``out`` or to its temporary folder ``tmp`` when inside them).

    >>> str(write_error(OSError(errno.ENOSPC, "No space left on device", "/tmp/.o.partial-1/a.bin"), "/tmp/o",
    ...                 "/tmp/.o.partial-1"))
    '/tmp/o: no space left on device while writing a.bin'
    """
    reason = (exc.strerror or os.strerror(exc.errno or 0)).lower()
    name = exc.filename2 if exc.filename is None else exc.filename
    what = Path(out).name
    if name is not None:
        what = os.fspath(name)
        for root in (tmp, out):
            if root is not None:
                with contextlib.suppress(ValueError):
                    rel = str(Path(what).absolute().relative_to(Path(root).absolute()))
                    what = Path(out).name if rel in ("", ".") else rel
                    break
    return CtcidError(f"{reason} while writing {what}", out)


@contextlib.contextmanager
def output_errors(out: str | os.PathLike[str], tmp: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Turn an :class:`OSError` of the environment (:data:`WRITE_ERRNOS`) raised inside the block into the one-line
    :class:`ctcid.errors.CtcidError` of :func:`write_error`; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(exc, out, tmp) from None


def check_output_dir(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse an existing output unless ``overwrite``; check the parent is writable."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise CtcidError(f"already exists; choose another output or pass {arg('overwrite')}", out)
    parent = out.absolute().parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CtcidError(f"cannot create the parent folder: {exc.strerror}", parent) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CtcidError("folder is not writable", parent)
    return out


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` when the block ends without error.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_dir(root / "result") as tmp:
    ...     _ = (tmp / "a.txt").write_text("done")
    >>> (root / "result" / "a.txt").read_text()
    'done'
    """
    out = check_output_dir(out, overwrite)
    parent = out.absolute().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise CtcidError(f"cannot write here: {exc.strerror}", parent) from None
    try:
        with output_errors(out, tmp):
            yield tmp
            tmp.chmod(0o755)
            if out.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
                os.replace(out, trash / "old")
                os.replace(tmp, out)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write names no file: name the one being written
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
