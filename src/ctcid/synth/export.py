"""Writing a synthetic export folder (per-cell crops, or slide scans with ``frames``), atomically."""

from __future__ import annotations

import os
from pathlib import Path

from .._runtime import Progress
from ..io import atomic_dir
from .cohort import generate_cohort
from .frames import generate_frames
from .presets import SynthConfig

__all__ = ["write_export"]


def write_export(
    out: str | os.PathLike[str],
    config: SynthConfig,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Generate the cohort ``config`` into the new folder ``out``: crops in the DEPArray layout
    (:func:`generate_cohort`) or, with ``config.frames``, slide scans (:func:`generate_frames`). The folder
    appears only when complete.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = write_export(pathlib.Path(tempfile.mkdtemp()) / "x", SynthConfig(patients=1, cells_per_patient=3,
    ...                    size=32), workers=1)
    >>> sorted(p.name for p in out.iterdir())
    ['P01', 'cohort.json', 'labels.csv']
    """
    config.validate()
    generate = generate_frames if config.frames else generate_cohort
    total = config.patients * config.cells_per_patient
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    with atomic_dir(out, overwrite) as tmp:
        generate(tmp, config, workers=workers, progress=step)
    return Path(out)
