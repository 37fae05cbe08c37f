"""Shared fixtures: tiny exports written directly, so reader tests do not depend on the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

CHANNELS = ("BF", "DAPI", "CK", "CD45")


def write_tiff(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="minisblack", metadata=None)
    return path


def make_deparray(
    root: Path,
    samples: tuple[str, ...] = ("P1", "P2"),
    cells: int = 3,
    channels: tuple[str, ...] = CHANNELS,
    size: int = 24,
    seed: int = 0,
    labels: bool = True,
) -> dict[tuple[str, str], np.ndarray]:
    """Write ``SAMPLE/CELL_CH.tif`` files (and labels.csv); return the pixels per (sample, cell)."""
    rng = np.random.default_rng(seed)
    truth = {}
    rows = ["cell_id,sample_id,label"]
    for s in samples:
        for i in range(cells):
            cell = f"{s}_c{i:02d}"
            stack = rng.integers(100, 60000, size=(len(channels), size, size)).astype(np.uint16)
            for ch, plane in zip(channels, stack, strict=True):
                write_tiff(root / s / f"{cell}_{ch}.tif", plane)
            truth[(s, cell)] = stack
            rows.append(f"{cell},{s},{'ctc' if i == 0 else 'wbc'}")
    if labels:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return truth


@pytest.fixture
def deparray(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "export"
    truth = make_deparray(root)
    return root, truth
