"""Crashes lose nothing: ingest and predict killed with SIGKILL leave no output a later command accepts,
and running them again completes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctcid.errors import CtcidError
from ctcid.io import CellDataset


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ctcid.synth import SynthConfig, generate_cohort

    root = tmp_path_factory.mktemp("crash") / "export"
    root.mkdir()
    generate_cohort(root, SynthConfig(patients=6, cells_per_patient=500, size=48, seed=1), workers=2)
    return root


def _kill_when_partial(args: list[str], out: Path) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctcid", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(out.parent.glob(f".{out.name}.partial-*")):
            time.sleep(0.3)  # well inside the work
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    return proc.wait()


def test_killed_ingest_leaves_nothing_a_later_command_accepts(big_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    rc = _kill_when_partial(["ingest", str(big_export), str(out), "--workers", "0"], out)
    assert rc == -signal.SIGKILL, "ingest finished before it could be killed"
    assert not out.exists()
    with pytest.raises(CtcidError):
        CellDataset.open(out)
    subprocess.run(
        [sys.executable, "-m", "ctcid", "ingest", str(big_export), str(out)], check=True, capture_output=True
    )
    assert len(CellDataset.open(out)) == 3000


def test_killed_predict_leaves_nothing_and_runs_again(big_export: Path, tmp_path: Path) -> None:
    from ctcid.data import channel_normalisation
    from ctcid.io import IngestOptions, ingest
    from ctcid.models import BundleMeta, create_model, save_bundle

    ingest(big_export, tmp_path / "ds", IngestOptions())
    ds = CellDataset.open(tmp_path / "ds")
    meta = BundleMeta(
        architecture="resnet10t",
        channels=["BF"],
        normalisation=channel_normalisation(ds, ["BF"], ["BF"]),
        crop_size=list(ds.crop_size),
        input_size=48,
        pixel_size_um=ds.pixel_size_um,
    )
    save_bundle(tmp_path / "model", create_model("resnet10t", in_chans=1), meta)
    out = tmp_path / "pred"
    args = [
        "predict",
        str(tmp_path / "model"),
        str(tmp_path / "ds"),
        str(out),
        "--batch-size",
        "64",
        "--device",
        "cpu",
    ]
    rc = _kill_when_partial(args, out)
    assert rc == -signal.SIGKILL, "predict finished before it could be killed"
    assert not out.exists()
    subprocess.run([sys.executable, "-m", "ctcid", *args], check=True, capture_output=True)
    assert (out / "predictions.parquet").is_file() and (out / "counts.csv").is_file()
