from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from conftest import make_deparray, write_tiff
from ctcid.errors import CtcidError, InputError
from ctcid.io import CellDataset, IngestOptions, fit_to_size, ingest, plan_ingest


def _open(path: Path) -> CellDataset:
    return CellDataset.open(path)


def test_deparray_round_trip(deparray, tmp_path: Path):
    root, truth = deparray
    res = ingest(root, tmp_path / "ds", IngestOptions(workers=0))
    assert res.header["source"]["layout"] == "deparray" and res.header["source"]["detected"]
    ds = _open(tmp_path / "ds")
    assert ds.channels == ["BF", "DAPI", "CK", "CD45"]
    assert len(ds) == 6 and ds.crop_size == (24, 24) and ds.pixel_size_um == 0.64
    for i, row in ds.table.iterrows():
        np.testing.assert_array_equal(ds.images([i])[0], truth[(row.sample_id, row.cell_id)])
    assert ds.table["label"].tolist() == ["ctc", "wbc", "wbc"] * 2
    assert ds.labels().tolist() == [1, 0, 0] * 2
    assert ds.table.loc[0, "src_DAPI"] == "P1/P1_c00_DAPI.tif"
    assert ds.header["classes"] == {"ctc": 2, "wbc": 4}
    stats = ds.header["channel_stats"]["BF"]
    bf = np.stack(list(truth.values()))[:, 0]
    assert stats["min"] == bf.min() and stats["max"] == bf.max()
    assert stats["mean"] == pytest.approx(bf.mean()) and stats["std"] == pytest.approx(bf.std())
    assert stats["p50"] == np.percentile(bf, 50, method="inverted_cdf")
    assert stats["p99"] == np.percentile(bf, 99, method="inverted_cdf")
    assert ds.header["fingerprint"].startswith("sha256:") and not (tmp_path / "ds" / "rejected.csv").exists()


def test_parallel_ingest_matches_serial(tmp_path: Path):
    root = tmp_path / "export"
    make_deparray(root, samples=("A", "B", "C"), cells=100, size=16)
    a = ingest(root, tmp_path / "a", IngestOptions(workers=0)).header
    b = ingest(root, tmp_path / "b", IngestOptions(workers=2)).header
    assert a["fingerprint"] == b["fingerprint"] and a["n_cells"] == 300
    pd.testing.assert_frame_equal(_open(tmp_path / "a").table, _open(tmp_path / "b").table)


def test_images_with_unsorted_index_and_channel_subset(deparray, tmp_path: Path):
    root, truth = deparray
    ingest(root, tmp_path / "ds")
    ds = _open(tmp_path / "ds")
    got = ds.images([4, 0, 2], channels=["CK", "BF"])
    for k, i in enumerate([4, 0, 2]):
        row = ds.table.iloc[i]
        np.testing.assert_array_equal(got[k], truth[(row.sample_id, row.cell_id)][[2, 0]])
    with pytest.raises(CtcidError, match="no channel"):
        ds.images([0], channels=["FITC"])


def test_channel_map_and_selection(tmp_path: Path):
    root = tmp_path / "export"
    make_deparray(root, channels=("BF", "DAPI", "FITC", "PE"))
    ingest(root, tmp_path / "ds", IngestOptions(channel_map={"FITC": "CK", "PE": "CD45"}))
    assert _open(tmp_path / "ds").channels == ["BF", "DAPI", "CK", "CD45"]
    ingest(root, tmp_path / "bf", IngestOptions(channels=["BF"]))
    assert _open(tmp_path / "bf").channels == ["BF"]


def test_labels_from_class_folders(tmp_path: Path):
    root = tmp_path / "export"
    rng = np.random.default_rng(0)
    for klass, n in (("ctc", 2), ("wbc", 3)):
        for i in range(n):
            for ch in ("BF", "DAPI"):
                write_tiff(
                    root / "S1" / klass / f"{klass}{i}_{ch}.tif", rng.integers(0, 9, (8, 8)).astype(np.uint16)
                )
    ingest(root, tmp_path / "ds")
    t = _open(tmp_path / "ds").table
    assert sorted(t["label"]) == ["ctc"] * 2 + ["wbc"] * 3 and set(t["sample_id"]) == {"S1"}


def test_unlabelled_export(tmp_path: Path):
    root = tmp_path / "export"
    make_deparray(root, labels=False)
    ingest(root, tmp_path / "ds")
    ds = _open(tmp_path / "ds")
    assert ds.table["label"].isna().all() and (ds.labels() == -1).all()


def test_differing_sizes_pad_and_resize(tmp_path: Path):
    root = tmp_path / "export"
    write_tiff(root / "S" / "a_BF.tif", np.full((20, 20), 7, np.uint16))
    write_tiff(root / "S" / "b_BF.tif", np.full((10, 12), 9, np.uint16))
    write_tiff(root / "S" / "c_BF.tif", np.full((40, 30), 11, np.uint16))
    ingest(root, tmp_path / "pad", IngestOptions(size=20))
    t = _open(tmp_path / "pad").table.set_index("cell_id")
    flags = t["qc_flags"].str.split(";")
    assert (
        flags["a"] == ["blank:BF"]
        and flags["b"] == ["blank:BF", "padded"]
        and flags["c"] == ["blank:BF", "cropped"]
    )
    assert (t["scale"] == 1.0).all() and t.loc["c", "orig_height"] == 40 and t.loc["c", "orig_width"] == 30
    pad = _open(tmp_path / "pad").images([1])[0, 0]
    assert (pad == 9).all()  # padded with the border median, no black frame
    ingest(root, tmp_path / "rs", IngestOptions(size=20, fit="resize"))
    t = _open(tmp_path / "rs").table.set_index("cell_id")
    assert t.loc["c", "scale"] == pytest.approx(0.5) and t.loc["b", "scale"] == pytest.approx(20 / 12)
    assert "resized" in t.loc["c", "qc_flags"] and t.loc["a", "scale"] == 1.0


def test_fit_to_size_centres():
    planes = np.zeros((1, 4, 4), np.uint16)
    planes[0, 1:3, 1:3] = 5
    out, scale, flags = fit_to_size(planes, 8)
    assert out.shape == (1, 8, 8) and flags == ["padded"] and scale == 1.0
    assert out[0, 3:5, 3:5].tolist() == [[5, 5], [5, 5]] and out.sum() == 20


def test_mixed_depths_and_png_named_jpg(tmp_path: Path):
    root = tmp_path / "export"
    root.mkdir()
    (root / "S").mkdir()
    write_tiff(root / "S" / "a_BF.tif", np.full((8, 8), 0.5, np.float32))
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "S" / "a_DAPI.jpg", format="PNG")
    ingest(root, tmp_path / "ds")
    ds = _open(tmp_path / "ds")
    px = ds.images([0])[0]
    assert (px[0] == 32768).all() and (px[1] == 65535).all()
    assert ds.table.loc[0, "source_dtype"] == "float32/uint8"
    assert "saturated:DAPI" in ds.table.loc[0, "qc_flags"] or "blank:DAPI" in ds.table.loc[0, "qc_flags"]


# ------------------------------------------------------------------------------------------- bad input


def test_existing_output_refused_unless_overwrite(deparray, tmp_path: Path):
    root, _ = deparray
    ingest(root, tmp_path / "ds")
    with pytest.raises(CtcidError, match="already exists"):
        ingest(root, tmp_path / "ds")
    before = json.loads((tmp_path / "ds" / "dataset.json").read_text())["created"]
    ingest(root, tmp_path / "ds", overwrite=True)
    assert (tmp_path / "ds" / "dataset.json").exists() and before


def test_store_refuses_incomplete_or_damaged_folders(deparray, tmp_path: Path):
    root, _ = deparray
    ingest(root, tmp_path / "ds")
    with pytest.raises(CtcidError, match="no such dataset"):
        CellDataset.open(tmp_path / "nothing")
    pix = tmp_path / "ds" / "pixels.u16"
    pix.write_bytes(pix.read_bytes()[:-2])
    with pytest.raises(CtcidError, match="wrong size"):
        CellDataset.open(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").write_text("{not json")
    with pytest.raises(CtcidError, match="malformed dataset header"):
        CellDataset.open(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").unlink()
    with pytest.raises(CtcidError, match="dataset.json is missing"):
        CellDataset.open(tmp_path / "ds")


# ------------------------------------------------------------------------------------------- other layouts


def test_manifest_layout(tmp_path: Path):
    imgs = tmp_path / "imgs"
    rng = np.random.default_rng(3)
    rows = ["cell,patient,class,BF,DAPI,site"]
    truth = {}
    for i in range(4):
        a, b = (rng.integers(0, 4000, (12, 12)).astype(np.uint16) for _ in range(2))
        write_tiff(imgs / f"x{i}_bright.tif", a)
        write_tiff(imgs / f"x{i}_nuc.tif", b)
        truth[f"x{i}"] = (a, b)
        rows.append(f"x{i},pat{i % 2},{'CTC' if i == 0 else 'WBC'},imgs/x{i}_bright.tif,imgs/x{i}_nuc.tif,siteA")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    res = ingest(tmp_path / "manifest.csv", tmp_path / "ds")
    assert res.header["source"]["layout"] == "manifest"
    ds = _open(tmp_path / "ds")
    assert ds.channels == ["BF", "DAPI"] and ds.table["label"].tolist() == ["ctc", "wbc", "wbc", "wbc"]
    assert ds.table["site"].tolist() == ["siteA"] * 4 and ds.table["sample_id"].tolist() == ["pat0", "pat1"] * 2
    np.testing.assert_array_equal(ds.images([3])[0, 1], truth["x3"][1])


def test_manifest_missing_column_and_ragged_rows(tmp_path: Path):
    (tmp_path / "m.csv").write_text("cell_id,BF\nc1,a.tif\n")
    with pytest.raises(CtcidError, match="missing column 'sample_id'"):
        plan_ingest(tmp_path / "m.csv")
    (tmp_path / "r.csv").write_text("cell_id,sample_id,BF\nc1,s1,a.tif,extra\n")
    with pytest.raises(CtcidError, match="line 2 has 4 fields"):
        plan_ingest(tmp_path / "r.csv")


@pytest.mark.parametrize("axis", ["first", "last"])
def test_stack_layout(tmp_path: Path, axis: str):
    root = tmp_path / "stacks"
    rng = np.random.default_rng(4)
    truth = []
    for i in range(3):
        cyx = rng.integers(0, 60000, (4, 20, 20)).astype(np.uint16)
        truth.append(cyx)
        data = cyx if axis == "first" else np.moveaxis(cyx, 0, -1)
        (root / "S1").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "S1" / f"cell{i}.tif", data, photometric="minisblack")
    res = ingest(root, tmp_path / "ds", IngestOptions(channels=["BF", "DAPI", "CK", "CD45"]))
    assert res.header["source"]["layout"] == "stack"
    ds = _open(tmp_path / "ds")
    for i in range(3):
        np.testing.assert_array_equal(ds.images([i])[0], truth[i])
    assert ds.table.loc[0, "src_CK"] == "S1/cell0.tif#2"


def test_stack_wrong_channel_count(tmp_path: Path):
    root = tmp_path / "stacks" / "S1"
    root.mkdir(parents=True)
    tifffile.imwrite(root / "a.tif", np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(root / "b.tif", np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="wrong channel count"):
        ingest(root.parent, tmp_path / "ds", IngestOptions(layout="stack", channels=["BF", "DAPI", "CK", "CD45"]))


def test_class_folders_rgb_with_maps(tmp_path: Path):
    root = tmp_path / "kaggle"
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    for klass in ("midCTC", "upCTC", "noCTC"):
        (root / klass).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rgb).save(root / klass / f"pt{i}-{klass}.jpg", format="PNG")  # PNG content, .jpg name
    opts = IngestOptions(
        layout="class-folders",
        channel_map={"R": "CK", "G": "CD45", "B": "DAPI"},
        label_map={"midCTC": "ctc", "upCTC": "ctc", "noCTC": "wbc"},
        sample_regex=r"^(pt\d+)",
    )
    ingest(root, tmp_path / "ds", opts)
    ds = _open(tmp_path / "ds")
    assert ds.channels == ["CK", "CD45", "DAPI"]
    assert sorted(ds.table["label"]) == ["ctc"] * 4 + ["wbc"] * 2
    assert sorted(set(ds.table["sample_id"])) == ["pt0", "pt1"]
    px = ds.images([0])[0]
    assert (px[0] == 10 * 257).all() and (px[1] == 20 * 257).all() and (px[2] == 30 * 257).all()
    with pytest.raises(CtcidError, match="unknown label 'midCTC'.*label_map=\\{'midCTC': 'ctc'\\}"):
        ingest(root, tmp_path / "ds2", IngestOptions(layout="class-folders"))


def test_auto_detects_class_folders(tmp_path: Path):
    root = tmp_path / "cf"
    for klass in ("ctc", "wbc"):
        (root / klass).mkdir(parents=True)
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(root / klass / "img.png")
    assert plan_ingest(root).layout == "class-folders"


def test_symlink_loop_does_not_hang(deparray, tmp_path: Path):
    root, _ = deparray
    (root / "P1" / "loop").symlink_to(root / "P1", target_is_directory=True)
    res = ingest(root, tmp_path / "ds")
    assert res.header["n_cells"] == 6
