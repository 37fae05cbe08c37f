"""Tests of the synthetic cohort generator: layout, determinism, and biology measured from the pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

import ctcid.synth.cohort as cohort_module
from ctcid.errors import CtcidError
from ctcid.synth import (
    CHANNELS,
    PRESETS,
    Difficulty,
    SynthConfig,
    generate_cohort,
    render_cells,
    sample_cells,
)

SMALL = {"patients": 3, "cells_per_patient": 24, "size": 48, "ctc_fraction": 0.3, "masks": True}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    return generate_cohort(out, SynthConfig(seed=3, **SMALL), workers=1)


@pytest.fixture(scope="module")
def rendered() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """About 600 medium-difficulty cells at 64 px, many CTCs, rendered in memory."""
    config = SynthConfig(patients=4, cells_per_patient=150, ctc_fraction=0.4, size=64, seed=11)
    patients, cells = sample_cells(config)
    images, masks = render_cells(cells, patients, size=64, pixel_size_um=0.64, seed=5)
    return cells, images, masks


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Each cell (mask > 0) dilated by ``pixels`` (eroded if negative), crop by crop."""
    structure = np.zeros((1, 3, 3), bool)
    structure[0] = ndimage.generate_binary_structure(2, 1)
    cell = mask > 0
    if pixels > 0:
        return ndimage.binary_dilation(cell, structure, iterations=pixels)
    if pixels < 0:
        return ndimage.binary_erosion(cell, structure, iterations=-pixels)
    return cell


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Pixels between ``inner`` px inside and ``outer`` px outside the outline of each cell."""
    return _grow(mask, outer) & ~_grow(mask, -inner)


def _background(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Median of each crop far from its cell."""
    far = ~_grow(mask, 8)
    return np.array([np.median(im[f]) for im, f in zip(image, far, strict=True)])


def _region_mean(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    return (image * region).sum(axis=(1, 2)) / np.maximum(region.sum(axis=(1, 2)), 1)


# ---- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"patients": -1},
        {"patients": 0},
        {"cells_per_patient": 0},
        {"ctc_fraction": -0.1},
        {"ctc_fraction": 1.5},
        {"ctc_fraction": float("nan")},
        {"difficulty": "extreme"},
        {"size": 8},
        {"size": 15},
        {"seed": -3},
        {"pixel_size_um": 0.0},
        {"label_noise": 1.2},
        {"patients": 2.5},
    ],
)
def test_validate_rejects_bad_values(change: dict[str, object]) -> None:
    config = SynthConfig(**change)
    with pytest.raises(CtcidError) as info:
        config.validate()
    assert "\n" not in str(info.value)
    assert next(iter(change)) in str(info.value)


def test_validate_accepts_defaults_and_edges() -> None:
    SynthConfig().validate()
    SynthConfig(size=16, ctc_fraction=0.0, label_noise=1.0, difficulty="hard").validate()
    SynthConfig(ctc_fraction=1.0, patients=1, cells_per_patient=1).validate()


def test_replace_keeps_fields_the_record_leaves_out() -> None:
    cfg = SynthConfig(patients=3, outcomes=True)
    assert "outcomes" not in cfg.to_dict()  # clinical.csv records it, not the cohort's config
    assert cfg.replace(seed=4).outcomes is True and cfg.replace(seed=4).seed == 4


def test_presets_order_difficulty() -> None:
    easy, medium, hard = PRESETS["easy"], PRESETS["medium"], PRESETS["hard"]
    assert PRESETS["medium"] == Difficulty()
    for name in ("ctc_wbc_like_fraction", "ctc_ck_low_fraction", "read_noise", "camera_gain", "blur_um"):
        assert getattr(easy, name) < getattr(medium, name) < getattr(hard, name), name
    for name in ("debris_rate", "neighbour_rate", "illumination_gradient", "offcentre_sd_px"):
        assert getattr(easy, name) < getattr(medium, name) < getattr(hard, name), name
    # size contrast between CTCs and the large leukocytes shrinks from easy to hard
    assert easy.ctc_diameter_um > medium.ctc_diameter_um > hard.ctc_diameter_um


def test_generate_refuses_missing_or_non_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(CtcidError):
        generate_cohort(tmp_path / "missing", SynthConfig(**SMALL), workers=1)
    (tmp_path / "x.txt").write_text("taken")
    with pytest.raises(CtcidError, match="not empty"):
        generate_cohort(tmp_path, SynthConfig(**SMALL), workers=1)


# ---- sampling: patients and labels --------------------------------------------------------------------


def test_default_cohort_patients_differ_and_some_have_no_ctc() -> None:
    patients, cells = sample_cells(SynthConfig())
    assert len(patients) == 12 and len(cells) == 12 * 200
    assert list(patients["sample_id"]) == [f"P{i:02d}" for i in range(1, 13)]
    per_patient = cells.groupby("sample_id")["label_true"].apply(lambda s: (s == "ctc").mean())
    assert (per_patient == 0).sum() >= 2
    positive = per_patient[per_patient > 0]
    assert positive.max() > 2 * positive.min()
    assert abs(per_patient.mean() - 0.1) < 0.005
    assert np.allclose(patients["ctc_prevalence"].to_numpy(), per_patient.to_numpy())
    # patient-specific CTC phenotype centroid and stain gains
    for name in ("ctc_diameter_um", "ck_peak", "cd45_peak", "bf_intensity", "defocus_mean_um"):
        assert patients[name].std() > 0.05 * abs(patients[name].mean()), name


def test_cell_table_contents() -> None:
    _, cells = sample_cells(SynthConfig(patients=3, cells_per_patient=300, ctc_fraction=0.3))
    assert cells["cell_id"].is_unique
    assert cells["cell_id"].str.fullmatch(r"P\d{2}_C\d{4}").all()
    assert set(cells["label"]) == {"ctc", "wbc"}
    wbc = cells[cells["label_true"] == "wbc"]
    ctc = cells[cells["label_true"] == "ctc"]
    assert set(wbc["subtype"]) == {"lymphocyte", "neutrophil", "monocyte"}
    assert {"ctc", "ctc_ck_low"} <= set(ctc["subtype"])
    assert (ctc["cd45_level"] == 0).all() and (wbc["cd45_level"] > 0).all()
    # after enrichment the larger leukocytes dominate
    counts = wbc["subtype"].value_counts()
    assert counts["neutrophil"] + counts["monocyte"] > 2 * counts["lymphocyte"] > 0
    # labels are not ordered by class inside a patient (ids must not leak labels)
    first = cells[cells["sample_id"] == "P02"]["label_true"].to_numpy()
    assert (first[:-1] != first[1:]).sum() > 4


def test_sampling_is_deterministic_and_seed_dependent() -> None:
    a = sample_cells(SynthConfig(seed=1))[1]
    b = sample_cells(SynthConfig(seed=1))[1]
    c = sample_cells(SynthConfig(seed=2))[1]
    pd.testing.assert_frame_equal(a, b)
    assert not a["cell_diameter_um"].equals(c["cell_diameter_um"])


def test_label_noise_flips_labels_and_keeps_truth() -> None:
    clean = sample_cells(SynthConfig(seed=4))[1]
    noisy = sample_cells(SynthConfig(seed=4, label_noise=0.2))[1]
    assert (noisy["label_true"] == clean["label"]).all()
    flipped = (noisy["label"] != noisy["label_true"]).mean()
    assert flipped == pytest.approx(0.2, abs=0.005)
    assert (clean["label"] == clean["label_true"]).all()


# ---- output layout and determinism ----------------------------------------------------------------------


def test_layout(small_cohort: Path) -> None:
    labels = pd.read_csv(small_cohort / "labels.csv")
    assert list(labels.columns[:8]) == [
        "cell_id",
        "sample_id",
        "label",
        "label_true",
        "subtype",
        "wbc_like",
        "cell_diameter_um",
        "nucleus_diameter_um",
    ]
    for name in ("ck_status", "cd45_status", "cell_area_um2", "nucleus_area_um2"):
        assert name in labels.columns
    assert labels["cell_id"].is_unique and len(labels) == 3 * 24
    meta = json.loads((small_cohort / "cohort.json").read_text())
    assert meta["channels"] == list(CHANNELS) == ["BF", "DAPI", "CK", "CD45"]
    assert meta["pixel_size_um"] == 0.64 and meta["format_version"] >= 1
    assert meta["config"]["seed"] == 3 and meta["difficulty"]["ctc_nc_ratio"] == PRESETS["medium"].ctc_nc_ratio
    assert [p["sample_id"] for p in meta["patients"]] == ["P01", "P02", "P03"]

    folders = sorted(p.name for p in small_cohort.iterdir() if p.is_dir())
    assert folders == ["P01", "P02", "P03"]
    tifs = sorted(small_cohort.rglob("*.tif"))
    assert len(tifs) == 4 * len(labels)
    for row in labels.itertuples():
        for channel in CHANNELS:
            path = small_cohort / row.sample_id / f"{row.cell_id}_{channel}.tif"
            cell_id, ch = path.stem.rsplit("_", 1)
            assert (cell_id, ch) == (row.cell_id, channel)
            assert path.is_file()
    with tifffile.TiffFile(tifs[0]) as tif:
        assert len(tif.pages) == 1
        page = tif.pages[0]
        assert page.compression == 1 and page.photometric == 1
        image = page.asarray()
    assert image.dtype == np.uint16 and image.shape == (48, 48)

    masks = np.load(small_cohort / "masks.npy", allow_pickle=False)
    assert masks.shape == (len(labels), 48, 48) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1, 2}
    # masks are in labels.csv row order: areas recomputed from them match the table
    area = (masks > 0).sum(axis=(1, 2)) * 0.64**2
    assert np.allclose(area, labels["cell_area_um2"], rtol=1e-4)
    nucleus = masks == 2
    assert (nucleus <= (masks > 0)).all() and nucleus.any(axis=(1, 2)).mean() > 0.9


def test_tiff_writer_matches_tifffile(tmp_path: Path) -> None:
    from ctcid.synth._tiff import tiff_header, write_tiff

    image = (np.arange(30 * 20, dtype=np.uint32) * 97 % 65536).astype(np.uint16).reshape(30, 20)
    write_tiff(tmp_path / "a.tif", image, tiff_header(30, 20, 0.64))
    tifffile.imwrite(tmp_path / "b.tif", image, photometric="minisblack", metadata=None)
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), image)
    a, b = (tmp_path / "a.tif").read_bytes(), (tmp_path / "b.tif").read_bytes()
    assert a[-image.nbytes :] == b[-image.nbytes :] == image.tobytes()
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == 3
        x_num, x_den = tags["XResolution"].value
        assert 1e4 / (x_num / x_den) == pytest.approx(0.64, rel=1e-6)


def test_same_seed_is_byte_identical_whatever_the_workers(
    tmp_path: Path, small_cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # several chunks per patient, so that chunk seeding and out-of-order completion are exercised
    monkeypatch.setattr(cohort_module, "CHUNK", 10)
    done: list[int] = []
    for name in ("one", "two", "other"):
        (tmp_path / name).mkdir()
    one = generate_cohort(tmp_path / "one", SynthConfig(seed=3, **SMALL), workers=1)
    two = generate_cohort(tmp_path / "two", SynthConfig(seed=3, **SMALL), workers=2, progress=done.append)
    assert sum(done) == 3 * 24 and len(done) == 9
    assert _hashes(one) == _hashes(two)
    other = generate_cohort(tmp_path / "other", SynthConfig(seed=4, **SMALL), workers=1)
    h_one, h_other = _hashes(one), _hashes(other)
    assert h_one.keys() == h_other.keys()
    assert sum(h_one[k] != h_other[k] for k in h_one) > 0.9 * len(h_one)


def test_chunking_does_not_change_the_cohort(tmp_path: Path, small_cohort: Path) -> None:
    # the module fixture used the default CHUNK; same seed, same bytes
    (tmp_path / "again").mkdir()
    again = generate_cohort(tmp_path / "again", SynthConfig(seed=3, **SMALL), workers=1)
    assert _hashes(again) == _hashes(small_cohort)


def test_render_cells_is_pure() -> None:
    patients, cells = sample_cells(SynthConfig(patients=1, cells_per_patient=6, size=32))
    before = cells.copy()
    a = render_cells(cells, patients, size=32, pixel_size_um=0.64, seed=9)
    b = render_cells(cells, patients, size=32, pixel_size_um=0.64, seed=np.random.SeedSequence(9))
    c = render_cells(cells, patients, size=32, pixel_size_um=0.64, seed=10)
    pd.testing.assert_frame_equal(cells, before)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (6, 4, 32, 32) and a[0].dtype == np.uint16


# ---- biology and optics measured from the pixels -----------------------------------------------------------


def test_dynamic_range(rendered: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    _, images, _ = rendered
    bf, fluo = images[:, 0], images[:, 1:]
    assert 12_000 < np.median(bf) < 32_000
    assert 100 < np.median(fluo) < 1_500
    assert np.percentile(images[:, 1].max(axis=(1, 2)), 90) > 5_000  # bright DAPI nuclei
    assert (images == 65_535).mean() < 1e-4  # saturation is rare


def test_ctc_larger_than_wbc_with_overlap(rendered: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    cells, _, masks = rendered
    area = (masks > 0).sum(axis=(1, 2)) * 0.64**2
    ctc, wbc = area[cells["label_true"] == "ctc"], area[cells["label_true"] == "wbc"]
    assert ctc.mean() > 1.05 * wbc.mean()
    # the distributions overlap: a fair share of CTCs are no larger than the largest leukocytes
    assert (ctc < np.percentile(wbc, 95)).mean() > 0.08
    assert (wbc > np.percentile(ctc, 5)).mean() > 0.1


def test_wbc_subtype_sizes_are_ordered(rendered: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    cells, _, masks = rendered
    area = pd.Series((masks > 0).sum(axis=(1, 2)) * 0.64**2).groupby(cells["subtype"].to_numpy()).median()
    assert area["lymphocyte"] < area["neutrophil"] < area["monocyte"]
    # diameters from the areas fall in the textbook ranges
    diameter = 2 * np.sqrt(area / np.pi)
    assert 7 <= diameter["lymphocyte"] <= 10 and 10 <= diameter["neutrophil"] <= 12
    assert 12 <= diameter["monocyte"] <= 20


def test_cd45_ring_on_wbc_only(rendered: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    cells, images, masks = rendered
    cd45 = images[:, 3].astype(float)
    ring = _region_mean(cd45, _ring(masks, 2, 2))
    interior = _grow(masks, -4)  # more than 4 px inside the outline
    centre = _region_mean(cd45, interior)
    positive = ring > 1.5 * _background(masks, cd45)
    is_wbc = (cells["label_true"] == "wbc").to_numpy()
    assert positive[is_wbc].mean() > 0.9
    assert positive[~is_wbc].mean() < 0.1
    # a membrane stain: brighter at the outline than in the middle of the cell
    big = is_wbc & interior.any(axis=(1, 2))
    assert big.sum() > 50 and np.median(ring[big] / centre[big]) > 1.2


def test_ck_on_ctc_with_ck_low_cells(rendered: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    cells, images, masks = rendered
    ck = images[:, 2].astype(float)
    inside = _region_mean(ck, masks > 0)
    positive = inside > 1.5 * _background(masks, ck)
    subtype = cells["subtype"].to_numpy()
    is_ctc = (cells["label_true"] == "ctc").to_numpy()
    assert positive[is_ctc].mean() > 0.75
    assert positive[subtype == "ctc"].mean() > 0.9
    assert (~positive[is_ctc]).sum() >= 3 and positive[subtype == "ctc_ck_low"].mean() < 0.5
    assert positive[~is_ctc].mean() < 0.08
    # CK fills the cytoplasm around the nucleus, not the nucleus pattern
    regular = subtype == "ctc"
    cyto = _region_mean(ck, masks == 1)[regular]
    nucleus = _region_mean(ck, masks == 2)[regular]
    assert np.median(cyto / nucleus) > 1.0


def test_nucleus_cytoplasm_ratio(rendered: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> None:
    cells, images, masks = rendered
    ratio = pd.Series((masks == 2).sum(axis=(1, 2)) / (masks > 0).sum(axis=(1, 2)))
    by = ratio.groupby(cells["subtype"].to_numpy()).mean()
    typical = ratio[((cells["subtype"] == "ctc") & ~cells["wbc_like"]).to_numpy()].mean()
    assert typical > by["neutrophil"] + 0.08 and typical > by["monocyte"] + 0.08
    ctc_all = ratio[(cells["label_true"] == "ctc").to_numpy()].mean()
    assert ctc_all > ratio[cells["subtype"].isin(["neutrophil", "monocyte"]).to_numpy()].mean()
    # DAPI lies on the nucleus
    dapi = images[:, 1].astype(float)
    assert (np.median(_region_mean(dapi, masks == 2) / _region_mean(dapi, masks == 1))) > 2


def test_bright_field_rim_flips_with_defocus() -> None:
    patients, cells = sample_cells(SynthConfig(patients=1, cells_per_patient=40, size=64, seed=2))
    base = cells[(cells["neighbour"] == "none") & (cells["n_debris"] == 0)].head(6)
    pair = pd.concat([base, base], ignore_index=True)
    pair["bf_defocus_um"] = np.repeat([2.0, -2.0], len(base))
    pair["blur_sigma_um"] = 0.4
    images, masks = render_cells(pair, patients, size=64, pixel_size_um=0.64, seed=1)
    bf = images[:, 0].astype(float)
    rim = _region_mean(bf, _ring(masks, 0, 2)) - _background(masks, bf)
    plus, minus = rim[: len(base)], rim[len(base) :]
    assert (plus < 0).all() and (minus > 0).all()  # dark rim for z > 0, bright halo for z < 0


def test_patients_differ_in_stain_intensity() -> None:
    config = SynthConfig(patients=6, cells_per_patient=30, size=48, seed=8, ctc_fraction=0.0)
    patients, cells = sample_cells(config)
    images, masks = render_cells(cells, patients, size=48, pixel_size_um=0.64, seed=0)
    ring = _region_mean(images[:, 3].astype(float), _ring(masks, 2, 2))
    per_patient = pd.Series(ring).groupby(cells["sample_id"].to_numpy()).median()
    expected = patients.set_index("sample_id")["cd45_peak"]
    assert np.corrcoef(per_patient[expected.index], expected)[0, 1] > 0.8


def test_write_failure_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cohort_module, "write_tiff", full)
    with pytest.raises(CtcidError, match="No space left"):
        generate_cohort(tmp_path, SynthConfig(**SMALL), workers=1)
