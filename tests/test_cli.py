from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_deparray
from ctcid.cli import run


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_ingest_and_info(capsys, tmp_path: Path):
    make_deparray(tmp_path / "export")
    code, out, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds")
    assert code == 0, err
    assert "wrote 6 cells (ctc 2, wbc 4) of 2 samples" in out and "layout: deparray (detected" in err
    code, out, _ = _cli(
        capsys, "info", tmp_path / "ds", "--montage", tmp_path / "m.png", "--summary", tmp_path / "s.csv"
    )
    assert code == 0 and "6 cells, 2 samples" in out
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "s.csv").read_text().splitlines()[
        0
    ] == "sample_id,cells,ctc,wbc,unlabelled,ctc_fraction,qc_flagged"


def test_user_error_is_one_line_and_exit_2(capsys, tmp_path: Path):
    make_deparray(tmp_path / "export")
    (tmp_path / "export" / "P2" / "P2_c02_DAPI.tif").write_bytes(b"")
    code, _, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("ctcid: error")]
    assert len(lines) == 1 and "P2_c02_DAPI.tif: empty file" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_messages_name_flags_in_the_command_and_arguments_in_python(capsys, tmp_path: Path):
    from ctcid.errors import CtcidError
    from ctcid.io import ingest

    make_deparray(tmp_path / "export")
    (tmp_path / "ds").mkdir()
    code, _, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds")
    assert code == 2 and "pass --overwrite" in err and "overwrite=True" not in err
    with pytest.raises(CtcidError, match="pass overwrite=True$"):  # the command's wording ends with the command
        ingest(tmp_path / "export", tmp_path / "ds")


def test_skip_writes_rejected_csv(capsys, tmp_path: Path):
    make_deparray(tmp_path / "export")
    (tmp_path / "export" / "P2" / "P2_c02_DAPI.tif").write_text("garbage")
    code, out, _ = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds", "--on-error", "skip")
    assert code == 0 and "1 rejected" in out
    assert "unknown image format" in (tmp_path / "ds" / "rejected.csv").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "nope"], "--layout must be one of"),
        (["--channel-map", "FITC"], "--channel-map expects NAME=VALUE"),
        (["--size", "3"], "--size must be >= 8, got 3"),
        (["--on-error", "ignore"], "--on-error must be one of"),
    ],
)
def test_bad_options_exit_2(capsys, tmp_path: Path, args: list[str], message: str):
    make_deparray(tmp_path / "export")
    code, _, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds", *args)
    assert code == 2 and message in err


def test_config_file_and_flag_override(capsys, tmp_path: Path):
    make_deparray(tmp_path / "export", size=24)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  size: 16\n  channels: [BF, DAPI]\n")
    assert _cli(capsys, "ingest", tmp_path / "export", tmp_path / "a", "--config", cfg)[0] == 0
    assert _cli(capsys, "ingest", tmp_path / "export", tmp_path / "b", "--config", cfg, "--size", "20")[0] == 0
    from ctcid.io import CellDataset

    a, b = CellDataset.open(tmp_path / "a"), CellDataset.open(tmp_path / "b")
    assert a.crop_size == (16, 16) and a.channels == ["BF", "DAPI"] and b.crop_size == (20, 20)
    assert a.header["ingest"]["size"] == 16 and a.header["ingest"]["channels"] == ["BF", "DAPI"]
    cfg.write_text("ingest:\n  sise: 16\n")
    code, _, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "c", "--config", cfg)
    assert code == 2 and "ingest.sise is not an option" in err and "c.yaml" in err


def test_usage_error_exit_2(capsys):
    code, _, err = _cli(capsys, "ingest")
    assert code == 2 and "Missing argument" in err


def test_info_on_non_dataset(capsys, tmp_path: Path):
    code, _, err = _cli(capsys, "info", tmp_path)
    assert code == 2 and "not a ctcid dataset" in err


def test_console_script_entry_point(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "ctcid", "info", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 2 and proc.stderr.strip().startswith("ctcid: error:") and "Traceback" not in proc.stderr
    )


def test_train_then_evaluate_commands(capsys, tmp_path: Path, small_store: Path):
    import json

    fast = ["--model", "resnet10t", "--epochs", "1", "--batch-size", "32", "--no-progress", "--n-boot", "20"]
    code, out, err = _cli(capsys, "train", small_store, tmp_path / "run", *fast, "--augment", "geometric")
    assert code == 0, err
    assert "model bundle:" in out and (tmp_path / "run" / "model" / "model.json").exists()
    cfg = (tmp_path / "run" / "config.yaml").read_text()
    assert "model: resnet10t" in cfg and "illumination: false" in cfg and "geometric: true" in cfg
    code, out, err = _cli(capsys, "evaluate", tmp_path / "run" / "model", small_store, tmp_path / "ev")
    assert code == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n_cells"] == 192 and set(metrics["metrics"]["f1"]) == {"value", "lo", "hi"}
    code, _, err = _cli(capsys, "train", small_store, tmp_path / "run", *fast)
    assert code == 2 and "--resume" in err
    code, _, err = _cli(capsys, "train", small_store, tmp_path / "x", "--channels", "BF,FITC")
    assert code == 2 and "no channel(s) FITC" in err


@pytest.mark.parametrize(
    ("command", "own_help"),
    [
        ("train", "Labels CSV (cell_id, label[, sample_id]) added"),
        ("ingest", "Export folder, or a manifest CSV."),
        ("detect", "Slide folder (tiles, multipage TIFFs"),
    ],
)
def test_commands_with_options_keep_their_own_help(capsys, monkeypatch, command: str, own_help: str):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _cli(capsys, command, "--help")
    assert code == 0
    assert own_help in " ".join(out.split())  # the command's own arguments keep their help texts
    assert "Replace an existing output." in out and "--no-overwrite" not in out
