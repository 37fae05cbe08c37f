"""A synthetic cohort written straight into a ctcid dataset, without the TIFF export and ingest round trip.

For benchmarks and experiments that need many cells quickly: the cells are those :func:`generate_cohort` would
write (same seed, same pixels), rendered in chunks and appended to a :class:`ctcid.io.DatasetWriter`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import DatasetWriter, atomic_dir, write_true_masks
from ._render import CHANNELS
from .cohort import CHUNK, render_cells, sample_cells
from .presets import SynthConfig

__all__ = ["synth_dataset"]

#: Columns of the generator's cell table carried into the dataset's cell table.
TABLE_COLUMNS = ("cell_id", "sample_id", "label", "label_true", "subtype")


def synth_dataset(out: str | os.PathLike[str], config: SynthConfig, *, overwrite: bool = False) -> Path:
    """Render the cohort ``config`` and write it as a dataset folder ``out`` (atomically).

    The cell table holds ``cell_id``, ``sample_id``, ``label``, ``label_true``, ``subtype`` and empty
    ``qc_flags``; with ``config.masks`` the ground-truth masks are written to ``out/truth/masks.npy``
    (as ``ctcid ingest`` carries them from an export; see :mod:`ctcid.io.truth`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ctcid.io import CellDataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> ds = CellDataset.open(synth_dataset(root / "ds", SynthConfig(patients=2, cells_per_patient=5, size=32)))
    >>> len(ds), ds.channels
    (10, ['BF', 'DAPI', 'CK', 'CD45'])
    """
    config.validate()
    patients, cells = sample_cells(config)
    with atomic_dir(out, overwrite) as tmp:
        writer = DatasetWriter(tmp, list(CHANNELS), config.size, config.pixel_size_um)
        masks = []
        try:
            for i, sample in enumerate(patients["sample_id"]):
                part = cells[cells["sample_id"] == sample]
                for j, lo in enumerate(range(0, len(part), CHUNK)):
                    chunk = part.iloc[lo : lo + CHUNK]
                    images, mask = render_cells(
                        chunk,
                        patients.iloc[[i]],
                        size=config.size,
                        pixel_size_um=config.pixel_size_um,
                        seed=np.random.SeedSequence(config.seed, spawn_key=(3, i, j)),  # as generate_cohort
                    )
                    rows = chunk[list(TABLE_COLUMNS)].assign(qc_flags="").reset_index(drop=True)
                    writer.append(images, rows)
                    if config.masks:
                        masks.append(mask)
        except BaseException:
            writer.abort()
            raise
        writer.finish(
            {
                "source": {"root": "synthetic", "layout": "synth", "detected": False},
                "synth": config.to_dict(),
                "rejected": 0,
            }
        )
        if config.masks:
            write_true_masks(tmp, np.concatenate(masks))
    return Path(out)
