"""Outputs that appear only when complete.

A folder is built under a hidden sibling name and renamed into place at the end; a file is
written to a temporary sibling and renamed. A crash (even SIGKILL) leaves at most a hidden
``.NAME.partial-XXXX`` folder, which no ctcid command accepts as a result.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import CtcidError

__all__ = ["atomic_dir", "atomic_write_bytes", "atomic_write_text", "check_output_dir"]


def check_output_dir(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse an existing output unless ``overwrite``; check the parent is writable."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise CtcidError("already exists; choose another output or pass --overwrite", out)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
