"""From whole frames to cells: frame layouts, cell finding, crops, bad frames, synthetic slides."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from ctcid.cli import run
from ctcid.detect import DetectOptions, crop_events, detect, find_cells, plan_frames
from ctcid.errors import CtcidError
from ctcid.io import CellDataset

H, W = 96, 128


def _cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def draw_frame(cells, h=H, w=W, seed=0, specks=(), debris=()) -> np.ndarray:
    """DAPI, CK, CD45 planes (uint16) of round cells ``(x, y, cell radius, nucleus radius, 'ctc'|'wbc')``."""
    yy, xx = np.mgrid[:h, :w]
    planes = np.zeros((3, h, w), np.float32)
    for x, y, rc, rn, kind in cells:
        d = np.hypot(xx - x, yy - y)
        planes[0] += 4000 * (d <= rn)
        if kind == "ctc":
            planes[1] += 3000 * (d <= rc)
        else:
            planes[2] += 3000 * (np.abs(d - rc) <= 1.0) + 600 * (d <= rc)
    for x, y in specks:  # bright point-like specks: noise, not events
        planes[0] += 20000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
    for x, y in debris:  # a CK-bright object without a nucleus
        planes[1] += 3000 * (np.hypot(xx - x, yy - y) <= 6)
    planes = ndi.gaussian_filter(planes, (0, 1.0, 1.0))
    noise = np.random.default_rng(seed).normal(0, 8, planes.shape)
    return np.clip(300 + planes + noise, 0, 65535).astype(np.uint16)


def write_tiles(folder: Path, frames: list[np.ndarray], blocks: list[int | None]) -> None:
    """``Tile000001.tif`` ...: one block per entry of ``blocks`` (a plane index, or None for a junk channel)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(frames)
    rng = np.random.default_rng(1)
    for k, plane in enumerate(blocks):
        for f, frame in enumerate(frames):
            image = frame[plane] if plane is not None else rng.integers(0, 500, frame.shape[1:]).astype(np.uint16)
            tifffile.imwrite(folder / f"Tile{k * n + f + 1:06d}.tif", image, photometric="minisblack")


# --------------------------------------------------------------------------------------------- finding


def test_find_cells_exact_positions_and_flags():
    cells = [
        (30.0, 30.0, 8, 5, "wbc"),  # isolated
        (90.0, 40.0, 10, 6, "ctc"),  # isolated CTC
        (40.0, 72.0, 7, 4, "wbc"),  # two touching leukocytes of the same size
        (54.0, 72.0, 7, 4, "wbc"),
        (124.0, 70.0, 8, 5, "ctc"),  # cut by the right edge, centre inside the frame
    ]
    frame = draw_frame(cells, specks=[(70.0, 15.0)], debris=[(85.0, 82.0)])
    found = find_cells(frame, ["DAPI", "CK", "CD45"], 0.64)
    ev = found.events
    xy = ev[["x_px", "y_px"]].to_numpy()

    def at(x, y):
        d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
        return ev.iloc[int(np.argmin(d))], float(d.min())

    for x, y, *_ in cells[:2]:
        row, dist = at(x, y)
        assert dist < 0.3 and row["flags"] == ""
    for x, y, *_ in cells[2:4]:  # each part of the pair misses the cap it shares: its centroid moves out a little
        row, dist = at(x, y)
        assert dist < 2.0 and row["flags"] == "touching"
    row, dist = at(124.0, 70.0)
    assert dist < 8 and "edge" in row["flags"].split(";")
    row, dist = at(85.0, 82.0)
    assert dist < 0.5 and row["flags"] == "debris" and row["nucleus_area_um2"] == 0
    assert len(ev) == 6, ev  # the speck is not an event
    # labels: one per event, in row-then-column order of the centres; nucleus inside its cell
    assert sorted(np.unique(found.labels))[1:] == list(range(1, 7))
    assert (ev["y_px"].diff().dropna() >= 0).all() or len(ev) == 1
    assert not (found.nucleus & (found.labels == 0)).any()


def test_crop_events_pad_outside_the_frame():
    frame = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    labels = np.zeros((20, 30), np.int32)
    labels[0:3, 0:3] = 1
    crops, masks, padded = crop_events(frame, labels, labels > 0, np.array([[1.0, 1.0], [15.2, 9.7]]), 8)
    assert padded.tolist() == [True, False]
    assert (crops[1] == frame[:, 6:14, 11:19]).all()  # rows round(9.7)-4, columns round(15.2)-4
    assert (crops[0, :, 3:, 3:] == frame[:, 0:5, 0:5]).all()
    assert (crops[0, :, :3, :3] == np.median(frame.reshape(3, -1), axis=1).astype(np.uint16)[:, None, None]).all()
    assert masks[0, 3:6, 3:6].tolist() == [[2, 2, 2]] * 3 and masks[1].sum() == 0


# --------------------------------------------------------------------------------------------- layouts


def test_tiles_with_a_skipped_block_give_exact_crops(tmp_path: Path):
    frames = [
        draw_frame([(40.0, 40.0, 8, 5, "wbc"), (88.0, 50.0, 10, 6, "ctc")], seed=1),
        draw_frame([(60.0, 48.0, 9, 5, "ctc")], seed=2),
    ]
    write_tiles(tmp_path / "slide", frames, [0, 1, None, 2])  # DAPI, CK, an unwanted marker, CD45
    opts = DetectOptions(channels=["DAPI", "CK", "-", "CD45"], size=32, workers=0, grid=(2, 1))
    res = detect(tmp_path / "slide", tmp_path / "ds", opts)
    ds = CellDataset.open(tmp_path / "ds")
    t = ds.table
    assert ds.channels == ["DAPI", "CK", "CD45"] and len(ds) == 3 and res.frames == 2
    assert t["frame"].tolist() == [1, 1, 2] and t["src_CD45"].tolist()[0] == "Tile000007.tif"
    assert np.allclose(t[["x_px", "y_px"]].to_numpy(), [[40, 40], [88, 50], [60, 48]], atol=0.3)
    np.testing.assert_allclose(t["slide_x_um"], (t["x_px"] + np.array([0, 0, W])) * 0.64, atol=0.01)
    for i, row in t.iterrows():
        r, c = round(row["y_px"]) - 16, round(row["x_px"]) - 16
        assert (ds.images([i])[0] == frames[row["frame"] - 1][:, r : r + 32, c : c + 32]).all()
    masks = np.load(tmp_path / "ds" / "detect" / "masks.npy", mmap_mode="r")
    assert masks.shape == (3, 32, 32) and masks.dtype == np.uint8 and (masks[:, 16, 16] == 2).all()
    assert pd.read_csv(tmp_path / "ds" / "detect" / "frames.csv")["events"].tolist() == [2, 1]


def test_tiles_with_the_channel_in_the_file_name(tmp_path: Path):
    frame = draw_frame([(50.0, 40.0, 8, 5, "ctc")])
    (tmp_path / "s").mkdir()
    for name, plane in zip(["DAPI", "CK", "CD45"], frame, strict=True):
        tifffile.imwrite(tmp_path / "s" / f"Tile000005_{name}.tif", plane)
    plan = plan_frames(tmp_path / "s", layout="tiles", pattern="Tile{frame}_{channel}.tif")
    assert plan.channels == ["DAPI", "CK", "CD45"] and [f.frame for f in plan.frames] == [5]


def test_multipage_frames_and_auto_layout(tmp_path: Path):
    frames = [draw_frame([(30.0, 60.0, 8, 5, "wbc")], seed=3), draw_frame([(100.0, 20.0, 9, 5, "ctc")], seed=4)]
    (tmp_path / "slide").mkdir()
    for i, f in enumerate(frames, start=11):
        tifffile.imwrite(tmp_path / "slide" / f"field{i:03d}.tif", f, photometric="minisblack")
    res = detect(
        tmp_path / "slide", tmp_path / "ds", DetectOptions(channels=["DAPI", "CK", "CD45"], size=24, workers=0)
    )
    t = CellDataset.open(tmp_path / "ds").table
    assert any("layout multipage (detected" in n for n in res.notes)
    assert t["frame"].tolist() == [11, 12] and t["src_CK"].tolist()[0] == "field011.tif#1"
    assert np.allclose(t[["x_px", "y_px"]].to_numpy(), [[30, 60], [100, 20]], atol=0.3)
    assert "slide_x_um" not in t  # no grid given: no slide coordinates
    assert (t["sample_id"] == "slide").all()


def _celltracks(root: Path, frames: dict[int, np.ndarray], events: str) -> None:
    """A cartridge as ACCEPT's CellTracks loader reads it: ``<id>.xml`` and multipage TIFFs under one folder,
    pages DAPI, FITC, CK, CD45 stored stretched to 16 bits with the scale in private tags."""
    (root / "processed").mkdir(parents=True)
    for number in range(1, 5):
        true = frames.get(number, draw_frame([], seed=number))
        pages = np.stack([true[0], true[0] // 2 + 100, true[1], true[2]]).astype(np.float64)
        with tifffile.TiffWriter(root / "processed" / f"img_{number:03d}.tif") as tw:
            for page in pages:
                high = float(page.max())
                raw = np.rint(page / high * 65535).astype(np.uint16)
                tags = [(754, "H", 1, 1, True), (755, "H", 1, 0, True), (756, "H", 1, int(high), True)]
                tw.write(raw, photometric="minisblack", extratags=tags, metadata=None)
    (root / "C100.xml").write_text(
        "<?xml version='1.0'?>\n<archive><runs><record><numcols>2</numcols><numrows>2</numrows>"
        f"<camxsize>{W}</camxsize><camysize>{H}</camysize></record></runs><events>{events}</events></archive>\n"
    )


def test_celltracks_cartridge_as_accept_reads_it(tmp_path: Path):
    # frame 3 of a 2 x 2 serpentine grid is the second row's right-hand frame: offset (W, H) on the slide
    cell = draw_frame([(40.0, 30.0, 8, 5, "ctc")], seed=5)
    ev = (
        f"<record><eventnum>7</eventnum><numselected>1</numselected><framenum>3</framenum>"
        f"<location>({W + 50}, {H + 40}) ({W + 30}, {H + 20})</location></record>"
    )
    _celltracks(tmp_path / "C100.1.1", {3: cell}, ev)
    res = detect(tmp_path / "C100.1.1", tmp_path / "ds", DetectOptions(size=32, workers=0))
    ds = CellDataset.open(tmp_path / "ds")
    t = ds.table
    assert any("layout celltracks (detected" in n for n in res.notes)
    assert ds.channels == ["DAPI", "FITC", "CK", "CD45"] and ds.pixel_size_um == 0.64
    assert len(t) == 1 and t["frame"].iloc[0] == 3 and t["sample_id"].iloc[0] == "C100.1.1"
    assert abs(t["x_px"].iloc[0] - 40) < 0.3 and abs(t["y_px"].iloc[0] - 30) < 0.3
    assert t["slide_x_um"].iloc[0] == pytest.approx((W + t["x_px"].iloc[0]) * 0.64, abs=0.01)
    assert t["slide_y_um"].iloc[0] == pytest.approx((H + t["y_px"].iloc[0]) * 0.64, abs=0.01)
    assert t["celltracks_event"].iloc[0] == 7 and t["celltracks_selected"].iloc[0] == 1
    # pixel values are rescaled back from the private tags: the crop equals the true frame
    r, c = round(t["y_px"].iloc[0]) - 16, round(t["x_px"].iloc[0]) - 16
    crop = ds.images([0], ["DAPI", "CK"])[0].astype(int)
    assert np.abs(crop - cell[:2, r : r + 32, c : c + 32].astype(int)).max() <= 1


# --------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def good_tiles(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    frames = [draw_frame([(40.0, 40.0, 8, 5, "wbc")], seed=s) for s in range(3)]
    write_tiles(tmp_path / "slide", frames, [0, 1, 2])
    return tmp_path / "slide", frames


def test_missing_block_and_indivisible_tiles_are_one_line_errors(capsys, tmp_path: Path, good_tiles):
    src, _ = good_tiles
    args = ("detect", src, tmp_path / "ds", "--channels", "DAPI,CK,CD45,FITC", "--tiles-per-channel", "3")
    code, _, err = _cli(capsys, *args)
    assert code == 2 and "the block of channel FITC (tiles 10..12) is missing" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "ds").exists()
    (src / "Tile000009.tif").unlink()
    code, _, err = _cli(capsys, "detect", src, tmp_path / "ds", "--channels", "DAPI,CK,CD45")
    assert code == 2 and "8 tiles do not divide into 3 channel blocks" in err
    code, _, err = _cli(
        capsys, "detect", src, tmp_path / "ds", "--channels", "DAPI,CK,CD45", "--tiles-per-channel", "3"
    )
    assert code == 2 and "missing tile for CD45 (tile 9)" in err and not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: f[:, :80, :], "frame 2 is 80x128 px but the slide's frames are 96x128"),
        (lambda f: np.stack([np.full_like(f[0], 300), f[1], f[2]]), "empty frame 2: channel DAPI is constant"),
        (lambda f: np.stack([f[0], np.where(np.arange(128) < 64, 65535, f[1]), f[2]]), "saturated frame 2: 50%"),
    ],
)
def test_bad_frames_stop_or_are_skipped(capsys, tmp_path: Path, good_tiles, spoil, message):
    src, frames = good_tiles
    bad = spoil(frames[1])
    for k in range(3):
        tifffile.imwrite(src / f"Tile{k * 3 + 2:06d}.tif", bad[k])
    code, _, err = _cli(capsys, "detect", src, tmp_path / "ds", "--channels", "DAPI,CK,CD45")
    errors = [ln for ln in err.splitlines() if ln.startswith("ctcid: error")]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not (tmp_path / "ds").exists()
    code, out, _ = _cli(capsys, "detect", src, tmp_path / "ds", "--channels", "DAPI,CK,CD45", "--on-error", "skip")
    assert code == 0 and "1 frame(s) rejected" in " ".join(out.split())
    rejected = pd.read_csv(tmp_path / "ds" / "rejected.csv")
    assert rejected["cell_id"].tolist() == ["frame 2"] and message in rejected["reason"].iloc[0]
    assert CellDataset.open(tmp_path / "ds").table["frame"].tolist() == [1, 3]


def test_cellpose_backend_without_cellpose_is_a_clear_error(capsys, tmp_path: Path, good_tiles):
    pytest.importorskip("numpy")
    try:
        import cellpose  # noqa: F401

        pytest.skip("cellpose is installed here")
    except ImportError:
        pass
    code, _, err = _cli(
        capsys, "detect", good_tiles[0], tmp_path / "ds", "--channels", "DAPI,CK,CD45", "--backend", "cellpose"
    )
    assert code == 2 and "pip install cellpose" in err and not (tmp_path / "ds").exists()


# --------------------------------------------------------------------------------------------- synthetic slides


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.*"))
    }


def test_synth_frames_then_detect_with_no_options(capsys, tmp_path: Path):
    slide = tmp_path / "slide"
    args = (
        "synth",
        slide,
        "--frames",
        "--cells-per-patient",
        "40",
        "--frame-size",
        "200x260",
        "--density",
        "crowded",
    )
    code, out, _ = _cli(capsys, *args, "--seed", "2")
    assert code == 0 and "wrote 40 cells of 1 patients" in out
    truth = pd.read_csv(slide / "truth.csv")
    assert list(truth.columns)[:5] == ["frame", "x_px", "y_px", "label", "diameter_um"] and len(truth) == 40
    spec = json.loads((slide / "frames.json").read_text())
    assert spec["layout"] == "tiles" and spec["channels"] == ["DAPI", "CK", "CD45", "BF"]
    assert len(list(slide.glob("Tile*.tif"))) == 4 * spec["tiles_per_channel"]
    code, out, err = _cli(capsys, "detect", slide, tmp_path / "ds")
    assert code == 0 and "from frames.json" in err
    t = CellDataset.open(tmp_path / "ds").table
    from ctcid.bench.detect import match_events

    matched = sum(
        match_events(g[["x_px", "y_px"]].to_numpy(), t[t["frame"] == f][["x_px", "y_px"]].to_numpy())
        for f, g in truth.groupby("frame")
    )
    assert matched >= 0.9 * len(truth) and matched >= 0.9 * len(t)
    # the same seed gives the same files, whatever the number of workers
    from ctcid.synth import SynthConfig
    from ctcid.synth.frames import generate_frames

    cfg = SynthConfig(
        patients=1, cells_per_patient=40, frames=True, frame_size=(200, 260), density="crowded", seed=2
    )
    (tmp_path / "again").mkdir()
    generate_frames(tmp_path / "again", cfg, workers=1)
    assert _hashes(tmp_path / "again") == _hashes(slide)


def test_synth_multipage_slides_of_several_patients(capsys, tmp_path: Path):
    out = tmp_path / "slides"
    args = ("synth", out, "--frames", "--patients", "2", "--cells-per-patient", "12", "--frame-size", "160x200")
    code, _, _ = _cli(capsys, *args, "--density", "crowded", "--frame-layout", "multipage")
    assert code == 0 and sorted(p.name for p in out.iterdir() if p.is_dir()) == ["P01", "P02"]
    truth = pd.read_csv(out / "truth.csv")
    assert truth["sample"].value_counts().to_dict() == {"P01": 12, "P02": 12}
    assert tifffile.imread(next((out / "P01").glob("frame*.tif"))).shape == (4, 160, 200)
    res = detect(out, tmp_path / "ds", DetectOptions(workers=0))
    assert res.header["n_samples"] == 2 and set(CellDataset.open(tmp_path / "ds").table["sample_id"]) == {
        "P01",
        "P02",
    }


def test_detect_output_is_a_dataset_features_read(tmp_path: Path, good_tiles):
    from ctcid.features import compute_features

    detect(good_tiles[0], tmp_path / "ds", DetectOptions(channels=["DAPI", "CK", "CD45"], workers=0, size=48))
    ds = CellDataset.open(tmp_path / "ds")
    feats = compute_features(ds, workers=0)
    assert len(feats) == 3 and feats["cell_area_um2"].notna().all()
    from ctcid.report.html import _where  # the report's gallery says where a candidate lies

    assert _where(ds.table, np.array([1])) == ["frame 2, x 40 y 40 px"]


def test_options_are_checked(tmp_path: Path, good_tiles):
    from ctcid.detect import parse_channels, parse_grid

    assert parse_channels("DAPI,-,CK,-") == ["DAPI", "-", "CK", "-"] and parse_grid("3x2") == (3, 2)
    with pytest.raises(CtcidError, match="names a channel twice"):
        parse_channels("DAPI,CK,DAPI")
    with pytest.raises(CtcidError, match="layout must be one of"):
        detect(good_tiles[0], tmp_path / "ds", DetectOptions(layout="nope"))
    with pytest.raises(CtcidError, match="tiles layout needs the channels"):
        detect(good_tiles[0], tmp_path / "ds", DetectOptions(workers=0))
    with pytest.raises(CtcidError, match="nuclear channel DAPI is not among"):
        detect(good_tiles[0], tmp_path / "ds", DetectOptions(channels=["A", "B", "C"], workers=0))
    assert not (tmp_path / "ds").exists()


def test_bench_detect_scores_every_density(capsys, tmp_path: Path):
    out = tmp_path / "detect.json"
    code, _, _ = _cli(capsys, "bench", "detect", "--frames", "1", "--frame-size", "160x200", "--out", out)
    result = json.loads(out.read_text())
    assert code == 0 and set(result["densities"]) == {"sparse", "medium", "crowded"}
    for entry in result["densities"].values():
        assert 0 <= entry["recall"] <= 1 and 0 <= entry["precision"] <= 1 and entry["frames"] == 1
        assert entry["matched"] <= min(entry["true_cells"], entry["events"])
        assert set(entry["reference"]) >= {"recall", "precision"}
    assert result["speed_medium"]["detect_frames_per_s"] > 0 and set(result["meets_target"]) == {
        "recall",
        "precision",
        "speed",
    }
