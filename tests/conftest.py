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


def make_store(
    out: Path, patients: int = 8, cells: int = 24, ctc: int = 6, size: int = 32, seed: int = 0, noise: float = 0.3
) -> Path:
    """A small labelled dataset written straight to the store: CTCs are larger, brighter-nucleus discs."""
    import pandas as pd

    from ctcid.io import DatasetWriter

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    writer = DatasetWriter(out, list(CHANNELS), size, 0.64)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    for p in range(patients):
        is_ctc = np.zeros(cells, bool)
        is_ctc[:ctc] = True
        radius = np.where(is_ctc, rng.uniform(8, 11, cells), rng.uniform(5, 8.5, cells))
        disc = (r[None] < radius[:, None, None]).astype(np.float32)
        ring = (np.abs(r[None] - radius[:, None, None]) < 1.5).astype(np.float32)
        base = rng.normal(0, noise, (cells, 4, size, size)).astype(np.float32)
        base[:, 0] += 1 - 0.5 * disc
        base[:, 1] += disc * np.where(is_ctc, 1.0, 0.6)[:, None, None]
        base[:, 2] += disc * is_ctc[:, None, None]
        base[:, 3] += ring * (~is_ctc)[:, None, None]
        pixels = np.clip(1000 + 8000 * base, 0, 65535).astype(np.uint16)
        rows = pd.DataFrame(
            {
                "cell_id": [f"P{p}_c{i:02d}" for i in range(cells)],
                "sample_id": f"P{p}",
                "label": np.where(is_ctc, "ctc", "wbc"),
                "qc_flags": "",
            }
        )
        writer.append(pixels, rows)
    writer.finish({"source": {"root": "generated", "layout": "test", "detected": False}, "rejected": 0})
    return out


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "ds")


def make_synth_store(
    out: Path,
    patients: int = 6,
    cells: int = 40,
    size: int = 64,
    seed: int = 0,
    difficulty: str = "easy",
    prefix: str = "P",
) -> Path:
    """A dataset of generator-rendered cells written straight to the store, with ``masks.npy`` beside it."""
    from ctcid.io import DatasetWriter
    from ctcid.synth import SynthConfig
    from ctcid.synth.cohort import render_cells, sample_cells

    cfg = SynthConfig(
        patients=patients,
        cells_per_patient=cells,
        ctc_fraction=0.3,
        size=size,
        seed=seed,
        difficulty=difficulty,
        sample_prefix=prefix,
    )
    pat, table = sample_cells(cfg)
    images, masks = render_cells(table, pat, size=size, pixel_size_um=cfg.pixel_size_um, seed=seed)
    out.mkdir(parents=True)
    writer = DatasetWriter(out, ["BF", "DAPI", "CK", "CD45"], size, cfg.pixel_size_um)
    rows = table[["cell_id", "sample_id", "label"]].assign(qc_flags="")
    writer.append(images, rows.reset_index(drop=True))
    writer.finish({"source": {"root": "generated", "layout": "test", "detected": False}, "rejected": 0})
    np.save(out.parent / f"{out.name}_truth_masks.npy", masks)
    return out


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth_store(tmp_path_factory.mktemp("synth") / "ds")
