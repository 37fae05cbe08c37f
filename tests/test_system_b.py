"""System B: portable trees, feature networks, their bundles, attributions and the ablation table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ctcid.data import feature_matrix, select_features
from ctcid.errors import CtcidError
from ctcid.evaluate import patient_folds
from ctcid.io import CellDataset
from ctcid.models import FeatureScaler, TreeEnsemble, create_model, load_bundle, read_meta
from ctcid.predict import bundle_logits
from ctcid.train import TrainConfig
from ctcid.workflows import train_model as fit

FOUR = ["BF", "DAPI", "CK", "CD45"]


def _cfg(**kw: object) -> TrainConfig:
    base = {"channels": FOUR, "epochs": 2, "batch_size": 32, "n_boot": 50, "progress": False, "n_folds": 3}
    return TrainConfig(**{**base, **kw})


def _split(ds: CellDataset) -> object:
    return patient_folds(ds.table["sample_id"].to_numpy(), ds.labels(), n_folds=3, seed=0, val_fraction=0.25)[0]


# ---- trees ------------------------------------------------------------------------------------------------


def test_tree_export_matches_scikit_learn_with_missing_values() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 3], nan=2.0)) > 0.3).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
    trees = TreeEnsemble.from_sklearn(clf)
    np.testing.assert_allclose(trees.decision_function(X), clf.decision_function(X), rtol=1e-10, atol=1e-10)
    # first k rounds = scikit-learn's staged prediction k
    staged = list(clf.staged_decision_function(X))
    np.testing.assert_allclose(
        TreeEnsemble.from_sklearn(clf, 7).decision_function(X), staged[6].ravel(), atol=1e-10
    )
    again = TreeEnsemble.from_state_dict(trees.state_dict())
    np.testing.assert_array_equal(again.decision_function(X), trees.decision_function(X))


def test_tree_arrays_out_of_range_or_cyclic_are_refused() -> None:
    state = {
        "feature": np.array([0, 0, 0], np.int32),
        "threshold": np.zeros(3),
        "left": np.array([1, 0, 0], np.int32),
        "right": np.array([2, 0, 0], np.int32),
        "missing_left": np.zeros(3, np.uint8),
        "is_leaf": np.array([0, 1, 1], np.uint8),
        "value": np.array([0.0, -1.0, 1.0]),
        "roots": np.array([0], np.int32),
        "baseline": np.array([0.5]),
        "n_features": np.array([1]),
    }
    ok = TreeEnsemble.from_state_dict(state)
    np.testing.assert_allclose(ok.decision_function(np.array([[-1.0], [1.0]])), [-0.5, 1.5])
    bad = {**state, "left": np.array([7, 0, 0], np.int32)}
    with pytest.raises(ValueError, match="out of range"):
        TreeEnsemble.from_state_dict(bad)
    cyclic = {**state, "is_leaf": np.zeros(3, np.uint8), "left": np.array([1, 0, 0], np.int32)}
    with pytest.raises(ValueError, match="cycle"):
        TreeEnsemble.from_state_dict(cyclic).decision_function(np.zeros((1, 1)))


# ---- feature inputs ---------------------------------------------------------------------------------------


def test_bright_field_models_never_read_fluorescence_features() -> None:
    names = ["cell_area_um2", "bf_mean_counts", "ck_mean_counts", "ck_cd45_ratio", "dapi_entropy_bits"]
    chans = ["", "BF", "CK", "CK;CD45", "DAPI"]
    assert select_features(names, chans, ["BF"]) == ["cell_area_um2", "bf_mean_counts"]
    assert select_features(names, chans, ["BF", "CK"]) == ["cell_area_um2", "bf_mean_counts", "ck_mean_counts"]
    assert select_features(names, chans, FOUR) == names


def test_feature_scaler_fits_training_rows_and_maps_missing_to_the_mean() -> None:
    X = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 30.0]])
    sc = FeatureScaler(2).fit(X)
    np.testing.assert_allclose(sc.mean.numpy(), [3.0, 20.0])
    z = sc(torch.tensor([[3.0, float("nan")], [5.0, 30.0]]))
    assert z[0].abs().max() == 0 and z[1, 0] > 0
    pca = FeatureScaler(2, pca_components=1).fit(X)
    assert pca(torch.zeros(4, 2)).shape == (4, 1)


# ---- training end to end --------------------------------------------------------------------------------


def test_features_gbm_trains_explains_and_round_trips(synth_store: Path, tmp_path: Path) -> None:
    ds = CellDataset.open(synth_store)
    res = fit(ds, _split(ds), _cfg(model="features_gbm", gbm={"max_iter": 30}), tmp_path / "gbm")
    run = tmp_path / "gbm"
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert res.test_metrics["metrics"]["f1"]["value"] > 0.8
    meta = read_meta(run / "model")
    assert meta.architecture == "features_gbm" and meta.inputs == ["features"]
    assert "ck_cd45_ratio" in meta.features.names
    bundle = load_bundle(run / "model")
    assert isinstance(bundle.model, TreeEnsemble)
    test = pd.read_csv(run / "test_predictions.csv")
    cells = ds.table.reset_index().set_index("cell_id").loc[test["cell_id"], "index"].to_numpy()
    np.testing.assert_allclose(bundle_logits(bundle, ds, cells), test["logit"], rtol=1e-5, atol=1e-5)
    imp = pd.read_csv(run / "feature_importance.csv")
    assert imp["rank"].tolist() == list(range(1, len(meta.features.names) + 1))
    assert imp["importance_mean"].is_monotonic_decreasing and imp["importance_mean"].iloc[0] > 0
    attr = pd.read_parquet(run / "feature_attributions.parquet")
    assert len(attr) == len(test) and set(meta.features.names) <= set(attr.columns)
    assert np.isfinite(attr[meta.features.names].to_numpy()).all()
    # the explain command attributes the features of chosen cells
    from ctcid.cli.main import run as cli

    first = str(ds.table["cell_id"].iloc[0])
    with pytest.raises(SystemExit) as exc:
        cli(["explain", str(run / "model"), str(synth_store), str(tmp_path / "ex"), "--cells", first])
    assert exc.value.code in (0, None)
    explained = pd.read_csv(tmp_path / "ex" / "feature_attributions.csv")
    assert explained["cell_id"].astype(str).tolist() == [first] and "ck_cd45_ratio" in explained.columns
    # a tampered tree file is refused
    w = run / "model" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CtcidError, match="sha256"):
        load_bundle(run / "model")


@pytest.mark.parametrize(
    "model,extra", [("dual_branch", {"fusion": "gated", "pca_components": 6}), ("features_mlp", {})]
)
def test_feature_networks_train_and_round_trip(synth_store: Path, tmp_path: Path, model: str, extra: dict) -> None:
    ds = CellDataset.open(synth_store)
    fit(ds, _split(ds), _cfg(model=model, backbone="resnet18", **extra), tmp_path / model)
    run = tmp_path / model
    bundle = load_bundle(run / "model")
    assert bundle.meta.model_kwargs["n_features"] == len(bundle.meta.features.names)
    test = pd.read_csv(run / "test_predictions.csv")
    cells = ds.table.reset_index().set_index("cell_id").loc[test["cell_id"], "index"].to_numpy()
    np.testing.assert_allclose(bundle_logits(bundle, ds, cells, device="cpu"), test["logit"], rtol=1e-4, atol=1e-4)
    cfg = _cfg()
    X, _ = feature_matrix(ds, cfg.segmentation, cfg.features, channels=cfg.channels)
    train = np.asarray(_split(ds).train)
    np.testing.assert_allclose(
        bundle.model.scaler.mean.numpy(), np.nanmean(X[train].astype(np.float64), axis=0), rtol=1e-4, atol=1e-3
    )
    assert (run / "feature_importance.png").stat().st_size > 1000
    assert len(pd.read_parquet(run / "feature_attributions.parquet")) == len(test)
    if model == "dual_branch":  # the saliency of its image branch, and how much of the logit each branch carries
        from ctcid.explain import explain_cells

        res = explain_cells(run / "model", synth_store, tmp_path / "ex", top=3)
        assert res.summary["masks"] == "segmentation" and 0 <= res.summary["mass_in_cell"] <= 1
        split = res.cells["logit_image"] + res.cells["logit_features"]
        np.testing.assert_allclose(split, res.cells["logit"] - res.cells["baseline_logit"], atol=0.05)
        assert res.cells["image_share"].between(0, 1).all() and 0 <= res.summary["image_share"] <= 1


def test_dual_branch_fusions_differ_and_refuse_unknown() -> None:
    a = create_model("dual_branch", in_chans=2, n_features=5, fusion="concat")
    b = create_model("dual_branch", in_chans=2, n_features=5, fusion="gated")
    assert hasattr(b, "gate") and not hasattr(a, "gate")
    x, f = torch.randn(3, 2, 32, 32), torch.randn(3, 5)
    a.eval(), b.eval()
    assert a(x, f).shape == b(x, f).shape == (3, 1)
    with pytest.raises(CtcidError, match="fusion"):
        create_model("dual_branch", n_features=5, fusion="sum")
    with pytest.raises(CtcidError, match="tree model"):
        create_model("features_gbm")


def test_ablate_system_b_writes_one_table(synth_store: Path, tmp_path: Path) -> None:
    from ctcid.cli.main import run

    out = tmp_path / "abl"
    with pytest.raises(SystemExit) as exc:
        run(
            [
                "ablate",
                str(synth_store),
                str(out),
                "--system",
                "B",
                "--epochs",
                "1",
                "--folds",
                "2",
                "--batch-size",
                "32",
                "--n-boot",
                "20",
                "--no-progress",
                "--input-size",
                "32",
                "--backbone",
                "resnet18",
            ]
        )
    assert exc.value.code in (0, None)
    table = pd.read_csv(out / "table.csv")
    assert table["variant"].tolist() == [
        "image_cnn",
        "features_logreg",
        "features_gbm",
        "features_mlp",
        "dual_concat",
        "dual_gated",
    ]
    assert table["folds"].eq(2).all() and table["f1_mean"].notna().all()
    assert "System B" in (out / "table.md").read_text()
