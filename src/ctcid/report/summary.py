"""What is in a dataset: cells per sample and class, QC flags, and a montage of example cells."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import CellDataset
from ..io._atomic import atomic_write_bytes, atomic_write_text

__all__ = ["DatasetDescription", "dataset_summary", "describe_dataset", "montage", "qc_summary", "to_display"]


def dataset_summary(ds: CellDataset) -> pd.DataFrame:
    """Cells per sample and class, one row per sample plus a ``total`` row.

    Columns: ``sample_id``, ``cells``, ``ctc``, ``wbc``, ``unlabelled``, ``ctc_fraction``, ``qc_flagged``.
    """
    t = ds.table
    label = t["label"].fillna("unlabelled").astype(str)
    counts = pd.crosstab(t["sample_id"], label)
    for col in ("ctc", "wbc", "unlabelled"):
        if col not in counts:
            counts[col] = 0
    counts = counts[["ctc", "wbc", "unlabelled"]]
    counts.columns.name = None
    flagged = (t["qc_flags"].fillna("") != "").groupby(t["sample_id"]).sum()
    out = counts.assign(cells=counts.sum(axis=1), qc_flagged=flagged.reindex(counts.index).fillna(0).astype(int))
    total = out.sum(axis=0).to_frame("total").T
    out = pd.concat([out, total])
    labelled = out["ctc"] + out["wbc"]
    out["ctc_fraction"] = np.where(labelled > 0, out["ctc"] / labelled.where(labelled > 0, 1), np.nan).round(4)
    out.index.name = "sample_id"
    return out.reset_index()[["sample_id", "cells", "ctc", "wbc", "unlabelled", "ctc_fraction", "qc_flagged"]]


def qc_summary(ds: CellDataset) -> pd.DataFrame:
    """How many cells carry each QC flag (``padded``, ``blank:DAPI``, ...)."""
    flags = ds.table["qc_flags"].fillna("").str.split(";").explode()
    flags = flags[flags != ""]
    return flags.value_counts().rename_axis("flag").reset_index(name="cells")


def to_display(images: np.ndarray, ds: CellDataset, channels: list[str]) -> np.ndarray:
    """Map uint16 crops ``[n, C, H, W]`` to uint8 with each channel's dataset-wide p1-p99.9 window."""
    out = np.empty(images.shape, dtype=np.uint8)
    for i, ch in enumerate(channels):
        st = ds.header["channel_stats"].get(ch) or {}
        lo, hi = float(st.get("p1", 0.0)), float(st.get("p99.9", 65535.0))
        hi = hi if hi > lo else lo + 1.0
        out[:, i] = np.clip((images[:, i].astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return out


def montage(
    ds: CellDataset,
    out: str | os.PathLike[str],
    *,
    per_class: int = 6,
    channels: list[str] | None = None,
    seed: int = 0,
    zoom: int = 2,
) -> Path:
    """Write a PNG grid of example cells: one row per cell, one column per channel, grouped by class.

    Cells are drawn at random (seeded) from each class; each channel uses the dataset-wide
    p1-p99.9 intensity window from the header, so brightness is comparable between cells.
    """
    from PIL import Image, ImageDraw

    channels = channels or ds.channels
    rng = np.random.default_rng(seed)
    label = ds.table["label"].fillna("unlabelled").astype(str).to_numpy()
    groups = [c for c in ("ctc", "wbc", "unlabelled") if (label == c).any()]
    picks = [
        (
            g,
            np.sort(
                rng.choice(np.flatnonzero(label == g), min(per_class, int((label == g).sum())), replace=False)
            ),
        )
        for g in groups
    ]
    h, w = ds.crop_size
    th, tw, pad, head, left = h * zoom, w * zoom, 4, 18, 150
    rows = sum(len(idx) for _, idx in picks) + len(picks)
    canvas = Image.new("L", (left + len(channels) * (tw + pad), head + rows * (th + pad)), color=255)
    draw = ImageDraw.Draw(canvas)
    for j, ch in enumerate(channels):
        draw.text((left + j * (tw + pad) + 2, 2), ch, fill=0)
    y = head
    for group, idx in picks:
        draw.text((4, y + 4), f"{group} ({int((label == group).sum())} cells)", fill=0)
        y += th + pad
        tiles = to_display(ds.images(idx, channels), ds, channels)
        for k, cell in enumerate(idx):
            row = ds.table.iloc[int(cell)]
            draw.text((4, y + 4), f"{row['sample_id']}", fill=0)
            draw.text((4, y + 18), f"{row['cell_id']}"[:22], fill=80)
            for j in range(len(channels)):
                tile = Image.fromarray(tiles[k, j]).resize((tw, th), Image.NEAREST)
                canvas.paste(tile, (left + j * (tw + pad), y))
            y += th + pad
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return atomic_write_bytes(out, buf.getvalue())


@dataclass
class DatasetDescription:
    """What ``ctcid info`` shows: the header's facts, cells per sample and class, and QC flag counts."""

    dataset: CellDataset
    samples: pd.DataFrame
    qc: pd.DataFrame

    def lines(self) -> list[str]:
        """Two lines on the dataset: size, channels, geometry; layout, fingerprint, rejections."""
        ds, h = self.dataset, self.dataset.header
        return [
            f"{ds.path}: {len(ds)} cells, {h['n_samples']} samples, channels {', '.join(ds.channels)}, "
            f"{ds.crop_size[0]}x{ds.crop_size[1]} px at {ds.pixel_size_um} um/px",
            f"layout {h['source']['layout']}, fingerprint {ds.fingerprint[:23]}..., "
            f"{h.get('rejected', 0)} rejected",
        ]


def describe_dataset(
    dataset: str | os.PathLike[str] | CellDataset,
    *,
    montage_png: str | os.PathLike[str] | None = None,
    summary_csv: str | os.PathLike[str] | None = None,
) -> DatasetDescription:
    """Summarise a dataset (cells per sample and class, QC flags); optionally write the montage of example
    cells and the per-sample table as CSV."""
    ds = dataset if isinstance(dataset, CellDataset) else CellDataset.open(dataset)
    desc = DatasetDescription(ds, dataset_summary(ds), qc_summary(ds))
    if summary_csv:
        atomic_write_text(summary_csv, desc.samples.to_csv(index=False))
    if montage_png:
        montage(ds, montage_png)
    return desc
