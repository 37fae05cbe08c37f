"""The bad-input corpus: malformed or hostile inputs, each with its expected outcome.

Each case turns a good 6-cell DEPArray export into one bad (or merely unusual) input. Its outcome is one of

``read``      ingested as usual (every cell kept);
``reject``    a per-cell problem: with ``--on-error stop`` an :class:`InputError` naming the file and the
              reason, exit code 2, one line, no output; with ``--on-error skip`` the other cells are
              ingested and ``rejected.csv`` lists the cell with the reason;
``refuse``    the whole input is unusable: a :class:`CtcidError` naming the file, in both modes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import make_deparray, write_tiff
from ctcid.errors import CtcidError, InputError
from ctcid.io import CellDataset, IngestOptions, ingest

TARGET = ("P1", "P1_c01", "CK")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _target(root: Path, suffix: str = ".tif") -> Path:
    s, c, ch = TARGET
    return root / s / f"{c}_{ch}{suffix}"


def _replace(root: Path, data: bytes, suffix: str) -> None:
    _target(root).unlink()
    _target(root, suffix).write_bytes(data)


_A8 = np.random.default_rng(0).integers(0, 255, (24, 24)).astype(np.uint8)


def _rename_cell(root: Path, old: str, new: str) -> None:
    for p in (root / "P1").glob(f"{old}_*"):
        p.rename(p.with_name(p.name.replace(old, new)))
    (root / "labels.csv").write_text((root / "labels.csv").read_text().replace(f"{old},", f"{new},"))


def _symlink_outside(root: Path) -> None:
    other = write_tiff(root.parent / "elsewhere.tif", np.zeros((24, 24), np.uint16))
    _target(root).unlink()
    _target(root).symlink_to(other)


def _manifest(root: Path, header: str, row: str) -> None:
    (root / "manifest.csv").write_text(f"{header}\n{row}\n")


# name -> (make the bad input in the export root, outcome, text expected in the message or reason)
CASES: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "truncated tiff": (
        lambda r: _target(r).write_bytes(_target(r).read_bytes()[:100]),
        "reject",
        "corrupt or truncated",
    ),
    "truncated png": (lambda r: _replace(r, _png(_A8)[:60], ".png"), "reject", "corrupt or truncated"),
    "truncated jpeg": (lambda r: _replace(r, _jpeg(_A8)[:100], ".jpg"), "reject", "corrupt or truncated"),
    "zero-byte file": (lambda r: _target(r).write_bytes(b""), "reject", "empty file"),
    "text file named .tif": (lambda r: _target(r).write_text("hello"), "reject", "unknown image format"),
    "text file named .png": (
        lambda r: _replace(r, b"not an image at all", ".png"),
        "reject",
        "unknown image format",
    ),
    "NaN pixels": (
        lambda r: write_tiff(_target(r), np.full((24, 24), np.nan, np.float32)),
        "reject",
        "NaN or infinite",
    ),
    "inf pixels": (
        lambda r: write_tiff(_target(r), np.full((24, 24), np.inf, np.float32)),
        "reject",
        "NaN or infinite",
    ),
    "-inf pixels": (
        lambda r: write_tiff(_target(r), np.full((24, 24), -np.inf, np.float64)),
        "reject",
        "NaN or infinite",
    ),
    "RGB file for one channel": (
        lambda r: write_tiff(_target(r), np.zeros((24, 24, 3), np.uint16) + np.arange(3, dtype=np.uint16)),
        "reject",
        "wrong channel count",
    ),
    "3-plane stack for one channel": (
        lambda r: write_tiff(_target(r), np.zeros((3, 24, 24), np.uint16)),
        "reject",
        "wrong channel count",
    ),
    "mismatched channel sizes": (
        lambda r: write_tiff(_target(r), np.zeros((20, 24), np.uint16)),
        "reject",
        "mismatched channel sizes",
    ),
    "missing channel file": (lambda r: _target(r).unlink(), "reject", "missing channel file for CK"),
    "duplicate cell id": (lambda r: _target(r, ".png").write_bytes(b"x"), "reject", "duplicate cell id"),
    "label outside the label map": (
        lambda r: (r / "labels.csv").write_text(
            (r / "labels.csv").read_text().replace("P1_c01,P1,wbc", "P1_c01,P1,maybe")
        ),
        "reject",
        "unknown label 'maybe'",
    ),
    "cell without a labels row": (
        lambda r: (r / "labels.csv").write_text((r / "labels.csv").read_text().replace("P1_c01,P1,wbc\n", "")),
        "reject",
        "no row for this cell",
    ),
    "decompression bomb tiff": (
        lambda r: write_tiff(_target(r), np.zeros((5000, 2), np.uint8)),
        "reject",
        "absurd dimensions",
    ),
    "decompression bomb png": (
        lambda r: _replace(r, _png(np.zeros((5000, 5000), np.uint8)), ".png"),
        "reject",
        "refused before decoding",
    ),
    "link outside the input root": (_symlink_outside, "reject", "outside the input folder"),
    # unusual but valid: must be read
    "png named .jpg": (lambda r: _replace(r, _png(_A8), ".jpg"), "read", ""),
    "png named .tif": (lambda r: _target(r).write_bytes(_png(_A8)), "read", ""),
    "jpeg": (lambda r: _replace(r, _jpeg(_A8), ".jpg"), "read", ""),
    "8-bit tiff": (lambda r: write_tiff(_target(r), _A8), "read", ""),
    "16-bit big-endian tiff": (
        lambda r: tifffile.imwrite(_target(r), np.arange(576, dtype=">u2").reshape(24, 24), byteorder=">"),
        "read",
        "",
    ),
    "compressed tiff": (
        lambda r: tifffile.imwrite(
            _target(r), np.arange(576, dtype=np.uint16).reshape(24, 24), compression="zlib"
        ),
        "read",
        "",
    ),
    "float32 image": (
        lambda r: write_tiff(_target(r), np.linspace(0, 1, 576, dtype=np.float32).reshape(24, 24)),
        "read",
        "",
    ),
    "float64 image": (lambda r: write_tiff(_target(r), np.random.default_rng(1).random((24, 24))), "read", ""),
    "negative int16 image": (lambda r: write_tiff(_target(r), np.full((24, 24), -5, np.int16)), "read", ""),
    "all-zero image": (lambda r: write_tiff(_target(r), np.zeros((24, 24), np.uint16)), "read", ""),
    "cell id with spaces and unicode": (lambda r: _rename_cell(r, "P1_c02", "P1 cé 02"), "read", ""),
    "stray text file and empty sample folder": (
        lambda r: ((r / "P1" / "notes.txt").write_text("hi"), (r / "P9").mkdir()),
        "read",
        "",
    ),
    "symlink loop": (lambda r: (r / "P1" / "loop").symlink_to(r / "P1", target_is_directory=True), "read", ""),
    # the whole input is unusable
    "manifest missing a column": (
        lambda r: _manifest(r, "cell_id,BF", "c1,P1/P1_c00_BF.tif"),
        "refuse",
        "missing column 'sample_id'",
    ),
    "manifest with a ragged row": (
        lambda r: _manifest(r, "cell_id,sample_id,BF", "c1,P1,P1/P1_c00_BF.tif,extra"),
        "refuse",
        "line 2 has 4 fields",
    ),
    "labels file with a duplicate cell": (
        lambda r: (r / "labels.csv").write_text((r / "labels.csv").read_text() + "P1_c01,P1,ctc\n"),
        "refuse",
        "duplicate cell id",
    ),
}


def _export(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "export"
    make_deparray(root)
    CASES[name][0](root)
    return root


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_with_on_error_stop(tmp_path: Path, name: str) -> None:
    root = _export(tmp_path, name)
    _, outcome, text = CASES[name]
    out = tmp_path / "ds"
    if outcome == "read":
        res = ingest(root, out, IngestOptions(workers=0))
        assert res.header["n_cells"] == 6 and not res.rejected
        return
    error = InputError if outcome == "reject" else CtcidError
    with pytest.raises(error, match=text) as info:
        ingest(root, out, IngestOptions(workers=0))
    assert info.value.exit_code == 2
    named = "P1_c01" if outcome == "reject" else ".csv"
    assert named in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".ds.partial-*"))


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[1] != "read"])
def test_corpus_with_on_error_skip(tmp_path: Path, name: str) -> None:
    root = _export(tmp_path, name)
    _, outcome, text = CASES[name]
    out = tmp_path / "ds"
    if outcome == "refuse":
        with pytest.raises(CtcidError, match=text):
            ingest(root, out, IngestOptions(workers=0, on_error="skip"))
        return
    ingest(root, out, IngestOptions(workers=0, on_error="skip"))
    ds = CellDataset.open(out)
    assert len(ds) == 5 and "P1_c01" not in set(ds.table["cell_id"])
    rejected = ds.rejected()
    assert "P1_c01" in set(rejected["cell_id"]) and rejected["reason"].str.contains(text, regex=False).any()
    # a link is refused while the folder is scanned (before cells are known), then its cell lacks that channel
    assert len(rejected) == (2 if name == "link outside the input root" else 1)


def test_corpus_has_at_least_thirty_inputs() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", ["zero-byte file", "manifest missing a column"])
def test_cli_prints_one_error_line_and_exits_2(tmp_path: Path, name: str) -> None:
    import subprocess
    import sys

    root = _export(tmp_path, name)
    proc = subprocess.run(
        [sys.executable, "-m", "ctcid", "ingest", str(root), str(tmp_path / "ds"), "--workers", "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ctcid: error: ")]
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]) and "Traceback" not in proc.stderr
    assert CASES[name][2] in errors[0]


def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    root = _export(tmp_path, "png named .tif")
    _target(root).chmod(0)
    if os.access(_target(root), os.R_OK):
        pytest.skip("permissions are not enforced for this user (root)")
    with pytest.raises(InputError, match="permission denied"):
        ingest(root, tmp_path / "ds", IngestOptions(workers=0))


def test_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    root = _export(tmp_path, "jpeg")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root)")
        with pytest.raises(CtcidError, match="not writable"):
            ingest(root, locked / "ds", IngestOptions(workers=0))
    finally:
        locked.chmod(0o755)
