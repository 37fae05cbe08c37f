"""Memory stays bounded: prediction over a dataset larger than the memory it is allowed completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcid.io import CellDataset, DatasetWriter

CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def _cgroup(limit: int) -> Path:
    """A cgroup-v1 memory group capped at ``limit`` bytes, or skip when this machine does not allow one."""
    group = CGROUP_V1 / f"ctcid-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
    except OSError as exc:
        pytest.skip(f"cannot create a memory-capped cgroup here ({exc.strerror})")
    return group


@pytest.mark.slow
def test_predict_over_a_dataset_larger_than_its_memory_cap(tmp_path: Path) -> None:
    from ctcid.data import channel_normalisation
    from ctcid.models import BundleMeta, create_model, save_bundle

    if not CGROUP_V1.is_dir():
        pytest.skip("no cgroup-v1 memory controller")
    cap = 900 << 20
    size, per_block, blocks = 64, 4096, 40  # 163,840 cells of 8 KiB: 1.25 GiB of pixels, above the cap
    path = tmp_path / "ds"
    path.mkdir()
    writer = DatasetWriter(path, ["BF"], size, 0.64)
    rng = np.random.default_rng(0)
    base = rng.integers(900, 1100, (per_block, 1, size, size), dtype=np.uint16)
    for b in range(blocks):
        rows = pd.DataFrame(
            {
                "cell_id": [f"c{b}_{i}" for i in range(per_block)],
                "sample_id": f"S{b % 8}",
                "label": "",
                "qc_flags": "",
            }
        )
        writer.append(np.roll(base, b, axis=0), rows)
    writer.finish({"source": {"root": "generated", "layout": "test", "detected": False}, "rejected": 0})
    ds = CellDataset.open(path)
    assert ds.pixels.nbytes > cap
    meta = BundleMeta(
        architecture="test_resnet",
        channels=["BF"],
        normalisation=channel_normalisation(ds, ["BF"], ["BF"]),
        crop_size=[size, size],
        input_size=32,
        pixel_size_um=0.64,
    )
    save_bundle(tmp_path / "model", create_model("test_resnet", in_chans=1), meta)
    group = _cgroup(cap)
    try:
        cmd = (
            f"echo $$ > {group / 'cgroup.procs'} && exec {sys.executable} -m ctcid predict "
            f"{tmp_path / 'model'} {path} {tmp_path / 'out'} --device cpu --batch-size 1024"
        )
        proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=1800)
        peak = int((group / "memory.max_usage_in_bytes").read_text())
    finally:
        group.rmdir()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert peak <= cap
    pred = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert len(pred) == len(ds) and pred["cell_id"].is_unique
