"""Saliency maps that point at the evidence, the randomisation check, and ground-truth masks through ingest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ctcid.explain import (
    METHODS,
    attribute_images,
    branch_contributions,
    choose_layer,
    explain_cells,
    mask_scores,
    randomised_model,
    rank_similarity,
)
from ctcid.io import CellDataset, IngestOptions, ingest, load_true_masks
from ctcid.io.truth import fit_masks
from ctcid.synth import SynthConfig, generate_cohort, synth_dataset


class SpotDetector(nn.Module):
    """Fires where the image is brighter than 2: a 3 x 3 box filter, a threshold, then the mean over the image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3)))


class CornerSum(nn.Module):
    """The logit is the sum of the top-left 8 x 8 corner of the image: nothing else counts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[:, :, :8, :8].sum(dim=(1, 2, 3))[:, None]


def _spot_detector() -> SpotDetector:
    m = SpotDetector()
    with torch.no_grad():
        m.conv.weight.fill_(1.0 / 9)
        m.conv.bias.fill_(-2.0)
        m.head.weight.fill_(1.0)
        m.head.bias.zero_()
    return m.eval()


def _images(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    """Noise in [0, 1] everywhere and a bright 6 x 6 spot in the top-left corner of each image."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 1, size, size)).astype(np.float32)
    for i in range(n):
        r, c = rng.integers(1, 6, 2)
        x[i, 0, r : r + 6, c : c + 6] = 4.0
    return x


def _corner_share(maps: np.ndarray, k: int = 12) -> tuple[float, bool]:
    pos = np.clip(maps, 0, None)
    share = float(pos[:, :k, :k].sum() / pos.sum())
    peaks = [np.unravel_index(np.argmax(p), p.shape) for p in pos]
    return share, all(r < k and c < k for r, c in peaks)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_spot_the_network_counts(method: str) -> None:
    maps, layer = attribute_images(_spot_detector(), _images(), method)
    share, peaks_inside = _corner_share(maps)
    assert maps.shape == (4, 32, 32)
    assert share > 0.9 and peaks_inside, (method, share)
    assert (layer == "conv") == (method in ("gradcam", "guided_gradcam"))


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion", "guided_gradcam"])
def test_pixel_methods_find_the_corner_a_network_sums(method: str) -> None:
    torch.manual_seed(0)
    net = CornerSum()
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.weight[0, 0, 1, 1] = 1.0
    x = np.random.default_rng(1).uniform(0.5, 1.5, (3, 1, 32, 32)).astype(np.float32)
    maps, _ = attribute_images(net, x, method)
    share, peaks_inside = _corner_share(maps, k=10)
    assert share > 0.95 and peaks_inside, (method, share)


def test_the_gradcam_layer_is_chosen_for_the_input_size() -> None:
    from ctcid.models import create_model

    net = create_model("resnet18", in_chans=1)
    assert choose_layer(net, 64, 1) == "layer2"  # 8 x 8: layer3 would be 4 x 4
    assert choose_layer(net, 32, 1) == "layer1"  # 8 x 8
    dual = create_model("dual_branch", in_chans=1, n_features=3, backbone="test_resnet")
    assert choose_layer(dual, 64, 1) == "cnn.layer2"


def test_the_randomisation_check_tells_a_model_from_its_reinitialised_copy() -> None:
    x = _images(6)
    trained = _spot_detector()
    torch.manual_seed(3)
    fresh = SpotDetector().eval()  # the same architecture, new weights
    for method in ("gradcam", "integrated_gradients"):
        a, _ = attribute_images(trained, x, method)
        b, _ = attribute_images(fresh, x, method)
        same = rank_similarity(np.clip(a, 0, None), np.clip(a, 0, None))
        assert np.allclose(same, 1.0)
        assert np.nanmean(rank_similarity(np.clip(a, 0, None), np.clip(b, 0, None))) < 0.5, method
    # a "map" that is the image itself does not depend on the model: similarity 1, the check flags it
    assert np.allclose(rank_similarity(x[:, 0], x[:, 0]), 1.0)


def test_randomised_model_reinitialises_the_weights_and_keeps_the_feature_scaling() -> None:
    from types import SimpleNamespace

    from ctcid.models import BundleMeta, create_model

    net = create_model("dual_branch", in_chans=1, n_features=3, backbone="test_resnet")
    with torch.no_grad():
        net.scaler.mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    kwargs = {"n_features": 3, "backbone": "test_resnet"}
    meta = BundleMeta("dual_branch", ["BF"], {}, [32, 32], 32, 0.64, model_kwargs=kwargs)
    fresh = randomised_model(SimpleNamespace(meta=meta, model=net), seed=1).state_dict()
    trained = net.state_dict()
    assert torch.equal(fresh["scaler.mean"], trained["scaler.mean"])
    assert not torch.equal(fresh["cnn.layer1.0.conv1.weight"], trained["cnn.layer1.0.conv1.weight"])
    assert not torch.equal(fresh["head.0.weight"], trained["head.0.weight"])


def test_branch_contributions_add_up_to_the_logit() -> None:
    from ctcid.models import create_model

    torch.manual_seed(0)
    net = create_model("dual_branch", in_chans=1, n_features=3, backbone="test_resnet").eval()
    x = np.random.default_rng(0).normal(size=(3, 1, 32, 32)).astype(np.float32)
    f = np.array([[1.0, 2.0, np.nan], [0.0, 5.0, 1.0], [3.0, -1.0, 2.0]], np.float32)
    split = branch_contributions(net, x, f, n_steps=64)
    total = split["logit_image"] + split["logit_features"]
    np.testing.assert_allclose(total, split["logit"] - split["baseline_logit"], atol=0.02)
    assert split["image_share"].between(0, 1).all()


def test_mask_scores_and_chance_level() -> None:
    masks = np.zeros((2, 10, 10), np.uint8)
    masks[:, 2:6, 2:6] = 1
    masks[:, 3:5, 3:5] = 2
    flat = np.ones((2, 10, 10))
    s = mask_scores(flat, masks)
    np.testing.assert_allclose(s["mass_in_cell"], 0.16)  # a uniform map scores the cell's share of the crop
    np.testing.assert_allclose(s["cell_area_fraction"], 0.16)
    focused = np.zeros((2, 10, 10))
    focused[:, 4, 4] = 1.0
    focused[1] *= -1  # no positive evidence: no score
    s = mask_scores(focused, masks)
    assert s["mass_in_nucleus"].iloc[0] == 1.0 and s["pointing_nucleus"].iloc[0] == 1.0
    assert np.isnan(s["mass_in_cell"].iloc[1]) and np.isnan(s["pointing"].iloc[1])


# ------------------------------------------------------------------------------------------------ masks


def test_true_masks_travel_through_ingest_matched_by_cell(tmp_path: Path) -> None:
    cfg = SynthConfig(patients=2, cells_per_patient=6, size=32, seed=4, masks=True)
    (tmp_path / "export").mkdir()
    generate_cohort(tmp_path / "export", cfg, workers=1)
    source = np.load(tmp_path / "export" / "masks.npy")
    keys = pd.read_csv(tmp_path / "export" / "labels.csv", dtype=str)
    # labels.csv in another order must not matter: masks follow their rows, cells are matched by id
    order = np.random.default_rng(0).permutation(len(keys))
    keys.iloc[order].to_csv(tmp_path / "export" / "labels.csv", index=False)
    np.save(tmp_path / "export" / "masks.npy", source[order])
    notes: list[str] = []
    ingest(tmp_path / "export", tmp_path / "ds", IngestOptions(workers=0, size=40), log=notes.append)
    ds = CellDataset.open(tmp_path / "ds")
    truth = load_true_masks(ds)
    assert truth is not None and truth.shape == (12, 40, 40)
    where = {(s, c): i for i, (s, c) in enumerate(zip(keys["sample_id"], keys["cell_id"], strict=True))}
    for row, (s, c) in enumerate(zip(ds.table["sample_id"], ds.table["cell_id"], strict=True)):
        np.testing.assert_array_equal(truth[row], fit_masks(source[[where[(s, c)]]], 40)[0])
    assert any("ground-truth masks of 12 cells" in n for n in notes)
    # the padded masks still cover the cell: the nucleus sits where DAPI is bright
    dapi = ds.images(slice(None), ["DAPI"])[:, 0].astype(np.float64)
    assert dapi[truth == 2].mean() > dapi[truth == 0].mean()


def test_synth_dataset_writes_true_masks_where_ingest_does(tmp_path: Path) -> None:
    path = synth_dataset(tmp_path / "ds", SynthConfig(patients=2, cells_per_patient=4, size=32, masks=True))
    masks = load_true_masks(CellDataset.open(path))
    assert masks is not None and masks.shape == (8, 32, 32) and set(np.unique(masks)) <= {0, 1, 2}


# ------------------------------------------------------------------------------------------------ explain


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset with true masks and an untrained small ResNet bundle for it (explanations need no accuracy)."""
    from ctcid.data import channel_normalisation
    from ctcid.models import BundleMeta, create_model, save_bundle

    root = tmp_path_factory.mktemp("sal")
    ds_path = synth_dataset(root / "ds", SynthConfig(patients=2, cells_per_patient=6, size=32, seed=2, masks=True))
    ds = CellDataset.open(ds_path)
    channels = ["BF", "DAPI", "CK", "CD45"]
    torch.manual_seed(0)
    meta = BundleMeta(
        architecture="test_resnet",
        channels=channels,
        normalisation=channel_normalisation(ds, channels, ["BF"]),
        crop_size=list(ds.crop_size),
        input_size=32,
        pixel_size_um=ds.pixel_size_um,
    )
    save_bundle(root / "model", create_model("test_resnet", in_chans=4).eval(), meta)
    return {"ds": ds_path, "model": root / "model"}


def test_explain_scores_its_maps_against_the_true_masks(untrained: dict[str, Path], tmp_path: Path) -> None:
    res = explain_cells(untrained["model"], untrained["ds"], tmp_path / "ex", top=4, method="integrated_gradients")
    summary = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert summary == res.summary
    assert summary["method"] == "integrated_gradients" and summary["layer"] is None
    assert summary["masks"] == "truth" and summary["cells"] == 4
    for key in ("mass_in_cell", "pointing_game", "mass_in_nucleus", "pointing_game_nucleus"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert -1.0 <= summary["randomisation_similarity"] <= 1.0
    sal = np.load(tmp_path / "ex" / "saliency.npy")
    assert sal.shape == (4, 32, 32) and sal.min() >= 0 and sal.max() == pytest.approx(1.0)
    cells = pd.read_csv(tmp_path / "ex" / "cells.csv")
    assert {"mass_in_cell", "pointing", "randomisation_similarity"} <= set(cells.columns)


def test_explain_command_takes_method_and_layer(untrained: dict[str, Path], tmp_path: Path) -> None:
    from ctcid.cli import run

    args = ["explain", str(untrained["model"]), str(untrained["ds"])]
    with pytest.raises(SystemExit) as exc:
        run([*args, str(tmp_path / "a"), "--top", "2", "--method", "guided_gradcam", "--layer", "layer1"])
    assert exc.value.code in (0, None)
    summary = json.loads((tmp_path / "a" / "explain.json").read_text())
    assert summary["method"] == "guided_gradcam" and summary["layer"] == "layer1" and summary["grid"] == [8, 8]
    with pytest.raises(SystemExit) as exc:
        run([*args, str(tmp_path / "b"), "--top", "2", "--layer", "layer9"])
    assert exc.value.code == 2 and not (tmp_path / "b").exists()


@pytest.mark.parametrize("method", METHODS)
def test_dual_branch_maps_hold_the_features_fixed(method: str) -> None:
    from ctcid.models import create_model

    torch.manual_seed(0)
    net = create_model("dual_branch", in_chans=2, n_features=3, backbone="test_resnet").eval()
    x = np.random.default_rng(0).normal(size=(2, 2, 32, 32)).astype(np.float32)
    f = np.ones((2, 3), np.float32)
    maps, layer = attribute_images(net, x, method, extra=(f,))
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and np.abs(maps).sum() > 0
    assert layer in (None, "cnn.layer1")
