"""Segmentation and hand-crafted features: golden values on drawn masks, agreement with scikit-image,
segmentation against the generator's ground truth, and the cached feature table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.measure import label, perimeter, regionprops

from ctcid.errors import CtcidError
from ctcid.features import (
    FeatureConfig,
    compute_features,
    feature_catalogue,
    load_features,
    load_segmentation,
    measure_cells,
    segment_dataset,
)
from ctcid.features import morphology as M
from ctcid.features import texture as T
from ctcid.features.intensity import masked_median
from ctcid.io import CellDataset
from ctcid.segment import SegmentConfig, otsu_thresholds, segment_cells


def _disc(r: float, size: int = 64, centre: tuple[float, float] | None = None) -> np.ndarray:
    m = np.zeros((size, size), bool)
    rr, cc = disk(centre or ((size - 1) / 2, (size - 1) / 2), r, shape=m.shape)
    m[rr, cc] = True
    return m


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


# ---- morphology: golden values ----------------------------------------------------------------------


def test_disc_has_known_area_perimeter_and_circularity() -> None:
    r, px = 12.0, 0.5
    f = M.shape_features(_disc(r)[None], px, "cell")
    assert f["cell_area_um2"][0] == pytest.approx(np.pi * r * r * px * px, rel=0.03)
    assert f["cell_perimeter_um"][0] == pytest.approx(2 * np.pi * r * px, rel=0.06)
    assert f["cell_equivalent_diameter_um"][0] == pytest.approx(2 * r * px, rel=0.02)
    assert f["cell_circularity"][0] > 0.9
    assert f["cell_eccentricity"][0] < 0.05
    assert f["cell_solidity"][0] > 0.95
    assert f["cell_major_axis_um"][0] == pytest.approx(f["cell_minor_axis_um"][0], rel=0.02)


def test_shape_measures_agree_with_scikit_image() -> None:
    masks = np.zeros((3, 60, 60), bool)
    masks[0] = _disc(15, 60)
    masks[1, 10:30, 5:50] = True
    masks[2] = _disc(10, 60, (20, 20)) | _disc(12, 60, (32, 34))
    per = M.perimeter_px(masks)
    major, minor, ecc = M.axes_px(masks)
    for i in range(3):
        (rp,) = regionprops(label(masks[i], connectivity=2))
        assert per[i] == pytest.approx(perimeter(masks[i]))
        assert major[i] == pytest.approx(rp.axis_major_length)
        assert minor[i] == pytest.approx(rp.axis_minor_length)
        assert ecc[i] == pytest.approx(rp.eccentricity, abs=1e-9)
    # a rectangle is its own convex hull; two overlapping discs are not
    hull = M.convex_area_px(masks)
    assert masks[1].sum() / hull[1] == pytest.approx(1.0)
    assert masks[2].sum() / hull[2] < 0.95


def test_empty_mask_gives_nan_not_an_error() -> None:
    f = M.shape_features(np.zeros((2, 16, 16), bool), 0.64, "nucleus")
    assert all(np.isnan(v).all() for v in f.values())


def test_lobe_count_separates_lobes_joined_by_thin_bridges() -> None:
    masks = np.zeros((3, 60, 60), bool)
    for c in ((20, 20), (20, 40), (40, 30)):
        masks[0] |= _disc(7, 60, c)
    masks[0, 20, 20:40] = True
    masks[0, 20:40, 30] = True
    masks[1] = _disc(12, 60)
    assert M.lobe_count(masks).tolist() == [3, 1, 0]


# ---- texture: agreement with scikit-image -------------------------------------------------------------


def test_glcm_features_match_scikit_image_on_a_full_mask() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, (3, 40, 40)).astype(np.float64)
    img[1] = np.cumsum(img[1], axis=1)  # a strong gradient
    q = T.quantise(img, np.ones(img.shape, bool), 16)
    f = T.glcm_features(q, 16, (1, 2, 4))
    for i in range(3):
        g = graycomatrix(
            q[i].astype(np.uint8), [1, 2, 4], list(T.GLCM_ANGLES), levels=16, symmetric=True, normed=True
        )
        for prop in ("contrast", "homogeneity", "energy", "correlation"):
            mine = [f[f"glcm_{prop}_d{d}"][i] for d in (1, 2, 4)]
            np.testing.assert_allclose(mine, graycoprops(g, prop).mean(axis=1), rtol=1e-9, err_msg=prop)


def test_glcm_counts_only_pairs_inside_the_mask() -> None:
    img = np.zeros((1, 20, 20))
    img[0, :, 10:] = 100.0  # an edge just outside the mask
    mask = np.zeros((1, 20, 20), bool)
    mask[0, 5:15, 2:10] = True
    q = T.quantise(img, mask, 8)
    f = T.glcm_features(q, 8, (1,))
    assert f["glcm_contrast_d1"][0] == 0.0 and f["glcm_energy_d1"][0] == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lbp_codes_match_scikit_image() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 4000, (2, 33, 31)).astype(np.uint16)
    img[1, :, :15] = 7  # flat area: ties everywhere
    codes = T.lbp_uniform(img)
    for i in range(2):
        np.testing.assert_array_equal(codes[i], local_binary_pattern(img[i].astype(np.float64), 8, 1, "uniform"))
    hist = T.lbp_histogram(img, np.ones(img.shape, bool))
    np.testing.assert_allclose(hist.sum(axis=1), 1.0)


def test_entropy_of_two_equal_levels_is_one_bit() -> None:
    img = np.zeros((1, 10, 10))
    img[0, :, 5:] = 10.0
    q = T.quantise(img, np.ones(img.shape, bool), 16)
    assert T.intensity_entropy_bits(q, 16)[0] == pytest.approx(1.0)


def test_masked_median_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 9, 9)).astype(np.float32)
    m = rng.random((4, 9, 9)) < 0.4
    m[3] = False
    got = masked_median(x, m)
    for i in range(3):
        assert got[i] == pytest.approx(float(np.median(x[i][m[i]])), rel=1e-6)
    assert np.isnan(got[3])


# ---- intensity ---------------------------------------------------------------------------------------


def _crop_stack(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """One drawn cell: CK fills it, CD45 is a membrane ring, DAPI fills the nucleus; background 100."""
    cell = _disc(14, size)
    nucleus = _disc(7, size)
    ring = cell & ~_disc(12, size)
    px = np.full((1, 4, size, size), 100, np.uint16)
    px[0, 1][nucleus] += 3000
    px[0, 2][cell] += 2000
    px[0, 3][ring] += 1000
    masks = cell.astype(np.uint8)
    masks[nucleus] = 2
    return px, masks[None]


def test_intensity_features_on_a_drawn_cell() -> None:
    px, masks = _crop_stack()
    f = measure_cells(px, masks, ["BF", "DAPI", "CK", "CD45"], 0.5, FeatureConfig(ring_um=1.0))
    row = f.iloc[0]
    area_um2 = (masks[0] > 0).sum() * 0.25
    assert row["ck_background_counts"] == 100
    assert row["ck_mean_counts"] == pytest.approx(2000)
    assert row["ck_median_counts"] == pytest.approx(2000)
    assert row["ck_std_counts"] == pytest.approx(0, abs=1e-3)
    assert row["ck_integrated_counts_um2"] == pytest.approx(2000 * area_um2, rel=1e-5)
    assert row["cd45_ring_interior_ratio"] > 3  # membrane stain
    assert row["ck_ring_interior_ratio"] == pytest.approx(1.0)  # cytoplasmic stain
    assert row["ck_cd45_ratio"] > 2
    assert row["nucleus_ck_fraction"] == pytest.approx(1.0)
    assert row["nc_area_ratio"] == pytest.approx(
        (masks[0] == 2).sum() / ((masks[0] > 0).sum() - (masks[0] == 2).sum()), rel=1e-5
    )
    assert row["nucleus_offset_um"] == pytest.approx(0, abs=0.05)


def test_feature_table_follows_the_catalogue() -> None:
    px, masks = _crop_stack()
    channels = ["BF", "DAPI", "CK", "CD45"]
    cat = feature_catalogue(channels)
    f = measure_cells(np.concatenate([px, px]), np.concatenate([masks, np.zeros_like(masks)]), channels, 0.64)
    assert list(f.columns) == cat["name"].tolist()
    assert cat["name"].is_unique and set(cat["group"]) == {"morphology", "texture", "intensity"}
    assert {
        "cell_area_um2",
        "nucleus_lobe_count",
        "dapi_glcm_correlation_d4",
        "cd45_lbp_u9",
        "ck_cd45_ratio",
    } <= set(cat["name"])
    assert (cat.loc[cat["name"].str.endswith("_um2"), "unit"].str.contains("um2")).all()
    assert f.iloc[1].drop(cat.loc[cat["name"].str.endswith("background_counts"), "name"]).isna().all()
    # without CK and CD45 the marker columns are absent
    assert "ck_cd45_ratio" not in feature_catalogue(["BF", "DAPI"])["name"].tolist()


# ---- segmentation ------------------------------------------------------------------------------------


def test_batched_otsu_matches_scikit_image() -> None:
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(0, 1, (5, 300)), rng.normal(6, 1, (5, 100))], axis=1)
    got = otsu_thresholds(v, bins=256)
    for i in range(5):
        assert got[i] == pytest.approx(threshold_otsu(v[i], nbins=256), abs=(np.ptp(v[i]) / 256) * 1.01)


def test_segmentation_matches_the_generators_masks(synth_store: Path) -> None:
    ds = CellDataset.open(synth_store)
    truth = np.load(synth_store.parent / f"{synth_store.name}_truth_masks.npy")
    masks, flags = segment_cells(ds.images(), ds.channels, ds.pixel_size_um)
    cell_iou = iou(masks > 0, truth > 0)
    nuc_iou = iou(masks == 2, truth == 2)
    assert cell_iou.mean() >= 0.85, cell_iou.mean()
    assert nuc_iou.mean() >= 0.75, nuc_iou.mean()
    assert np.median(cell_iou) >= 0.9
    assert sum("seg_no_cell" in f for f in flags) == 0


def test_segmentation_flags_an_empty_crop_and_bright_field_only_nuclei() -> None:
    rng = np.random.default_rng(4)
    empty = rng.normal(1000, 10, (1, 4, 48, 48)).clip(0).astype(np.uint16)
    masks, flags = segment_cells(empty, ["BF", "DAPI", "CK", "CD45"], 0.64)
    assert masks.max() == 0 and flags == ["seg_no_cell"]
    px, _ = _crop_stack()
    _, flags = segment_cells(px[:, [0, 2]], ["BF", "CK"], 0.5)
    assert "seg_nucleus_from_bf" in flags[0]
    with pytest.raises(CtcidError, match="segmentation needs"):
        segment_cells(px[:, [0]], ["X"], 0.5)
    with pytest.raises(CtcidError, match="threshold must be one of otsu, li"):
        SegmentConfig(threshold="mean").validate()


def test_li_threshold_also_segments(synth_store: Path) -> None:
    ds = CellDataset.open(synth_store)
    truth = np.load(synth_store.parent / f"{synth_store.name}_truth_masks.npy")[:40]
    masks, _ = segment_cells(ds.images(slice(0, 40)), ds.channels, ds.pixel_size_um, SegmentConfig(threshold="li"))
    assert iou(masks > 0, truth > 0).mean() > 0.75


# ---- the cached table ---------------------------------------------------------------------------------


def test_features_are_cached_in_the_dataset_and_reused(tmp_path: Path) -> None:
    from conftest import make_synth_store

    path = make_synth_store(tmp_path / "ds", patients=3, cells=20, size=48)
    ds = CellDataset.open(path)
    table = compute_features(ds, workers=2)
    assert len(table) == len(ds) and list(table.columns[:4]) == ["index", "cell_id", "sample_id", "seg_flags"]
    assert table["cell_id"].tolist() == ds.table["cell_id"].tolist()
    seg = load_segmentation(ds)
    assert seg.masks.shape == (len(ds), 48, 48) and seg.masks.dtype == np.uint8
    stamp = (path / "features" / "features.parquet").stat().st_mtime_ns
    again = compute_features(ds, workers=1)
    assert (path / "features" / "features.parquet").stat().st_mtime_ns == stamp  # reused
    pd.testing.assert_frame_equal(again, table)
    # other options recompute, and one process gives the same numbers as two
    other = compute_features(ds, config=FeatureConfig(glcm_levels=8), workers=1)
    assert not np.allclose(other["bf_glcm_contrast_d1"], table["bf_glcm_contrast_d1"], equal_nan=True)
    back = compute_features(ds, workers=1, overwrite=True)
    pd.testing.assert_frame_equal(back, table)
    assert load_features(ds).shape == table.shape
    seg_again = segment_dataset(ds)
    np.testing.assert_array_equal(np.asarray(seg_again.masks), np.asarray(seg.masks))


def test_missing_features_is_a_clear_error(small_store: Path) -> None:
    ds = CellDataset.open(small_store)
    if (small_store / "features").exists():
        pytest.skip("another test computed features for this store")
    with pytest.raises(CtcidError, match="ctcid features"):
        load_features(ds)


def test_segment_and_features_commands(tmp_path: Path) -> None:
    from conftest import make_synth_store
    from ctcid.cli.main import run

    path = make_synth_store(tmp_path / "ds", patients=2, cells=10, size=48)
    for args in (
        ["segment", str(path), "--workers", "1"],
        ["features", str(path), "--csv", str(tmp_path / "f.csv")],
    ):
        with pytest.raises(SystemExit) as exc:
            run(args)
        assert exc.value.code in (0, None)
    table = pd.read_csv(tmp_path / "f.csv")
    assert len(table) == 20 and "cell_area_um2" in table.columns
    assert (path / "segmentation" / "masks.npy").is_file()
    cat = pd.read_csv(path / "features" / "catalogue.csv")
    assert cat["name"].tolist() == list(table.columns[4:])
    with pytest.raises(SystemExit) as exc:
        run(["segment", str(path), "--threshold", "mean"])
    assert exc.value.code == 2
