"""Small and real cohorts: the logistic regression, small-data defaults, data without patient ids, cell ids from
paths, and failures that leave nothing behind (refused options, a full disk, a read-only output, a vanished
input)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_deparray, make_store
from ctcid.cli import run
from ctcid.errors import CtcidError

FAST = ["--n-boot", "20", "--no-progress"]


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("ctcid: error")]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 patients x 8 cells (3 CTCs each): a small study."""
    return make_store(tmp_path_factory.mktemp("tiny") / "ds", patients=6, cells=8, ctc=3, size=32)


@pytest.fixture(scope="module")
def one_patient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 cells of one sample id: data without patient ids."""
    return make_store(tmp_path_factory.mktemp("one") / "ds", patients=1, cells=40, ctc=14, size=32)


# ------------------------------------------------------------------------------------------- the linear model


def test_linear_model_matches_sklearn_and_round_trips():
    from sklearn.linear_model import LogisticRegression

    from ctcid.models import LinearModel
    from ctcid.train.linear import standardisation

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    X[3, 2] = np.nan
    scaler = standardisation(X, clip=np.inf)
    Z = scaler.standardise(X)
    assert np.allclose(Z[~np.isnan(X)].reshape(-1).mean(), Z.mean(), atol=0.1) and Z[3, 2] == 0.0
    clf = LogisticRegression(C=1.0).fit(Z, y)
    model = LinearModel(clf.coef_.ravel(), clf.intercept_[0], scaler.mean, scaler.scale, scaler.fill)
    assert np.allclose(model.decision_function(X), clf.decision_function(Z))
    again = LinearModel.from_state_dict(model.state_dict())
    assert np.array_equal(again.decision_function(X), model.decision_function(X))
    contrib = model.contributions(X)
    assert np.allclose(contrib.sum(axis=1) + model.intercept, model.decision_function(X))
    with pytest.raises(ValueError, match="lack"):
        LinearModel.from_state_dict({"coef": model.coef})
    with pytest.raises(ValueError, match="scales"):
        LinearModel(np.ones(2), 0.0, np.zeros(2), np.array([1.0, 0.0]), np.zeros(2))


def test_standardised_values_are_clipped():
    from ctcid.models import LinearModel

    m = LinearModel(np.ones(1), 0.0, mean=np.zeros(1), scale=np.ones(1), fill=np.zeros(1), clip=3.0)
    assert m.decision_function(np.array([[100.0], [-100.0], [1.0]])).tolist() == [3.0, -3.0, 1.0]


def test_features_logreg_trains_predicts_and_explains(capsys, tiny_store: Path, tmp_path: Path):
    from ctcid.models import LinearModel, load_bundle

    code, _, err = _cli(capsys, "train", tiny_store, tmp_path / "run", "--model", "features_logreg", *FAST)
    assert code == 0, err
    assert "a small study" in err and "features_logreg" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "complete" and info["model_selection"].startswith("C=")
    bundle = load_bundle(tmp_path / "run" / "model")
    assert isinstance(bundle.model, LinearModel) and bundle.meta.architecture == "features_logreg"
    assert bundle.model.n_features == len(bundle.meta.features.names)
    attr = pd.read_parquet(tmp_path / "run" / "feature_attributions.parquet")
    val = pd.read_csv(tmp_path / "run" / "val_predictions.csv")
    merged = attr.merge(val[["cell_id", "logit"]], on="cell_id")
    terms = merged[bundle.meta.features.names].to_numpy().sum(axis=1) + bundle.model.intercept
    assert len(merged) and np.allclose(terms, merged["logit"], atol=1e-4)
    code, _, err = _cli(capsys, "predict", tmp_path / "run" / "model", tiny_store, tmp_path / "pred")
    assert code == 0, err
    pred = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").set_index("cell_id")
    assert np.allclose(pred.loc[val["cell_id"], "logit"], val["logit"], atol=1e-4)
    assert json.loads((tmp_path / "pred" / "predict.json").read_text())["engine"] == "linear"
    code, _, err = _cli(capsys, "explain", tmp_path / "run" / "model", tiny_store, tmp_path / "ex", "--top", "3")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "ex" / "feature_attributions.csv")) == 3
    code, _, err = _cli(capsys, "export", tmp_path / "run" / "model")
    assert code == 2 and "already stored as portable arrays" in err


def test_regularisation_chosen_inside_training_when_validation_is_small(tiny_store: Path, tmp_path: Path):
    from ctcid.evaluate import train_val_split
    from ctcid.io import CellDataset
    from ctcid.models import load_bundle
    from ctcid.train import TrainConfig, fit

    ds = CellDataset.open(tiny_store)
    split = train_val_split(ds.table["sample_id"], ds.labels(), val_fraction=0.2)
    base = TrainConfig(model="features_logreg", channels=ds.channels, n_boot=0)
    fit(ds, split, base.replace(logreg={"min_val_ctc": 100}), tmp_path / "inner")
    fit(ds, split, base.replace(logreg={"min_val_ctc": 1}), tmp_path / "val")
    inner = json.loads((tmp_path / "inner" / "run.json").read_text())["model_selection"]
    on_val = json.loads((tmp_path / "val" / "run.json").read_text())["model_selection"]
    assert "inner" in inner and "patient-grouped" in inner and "validation patients (" in on_val
    history = pd.read_csv(tmp_path / "inner" / "history.csv")
    assert history["C"].tolist() == sorted(base.logreg.c_grid) and history["val_pr_auc"].notna().all()
    fit(ds, split, base.replace(l1_ratio=1.0, logreg={"c_grid": [1.0]}), tmp_path / "lasso")
    lasso = load_bundle(tmp_path / "lasso" / "model").model
    assert 0 < int((lasso.coef != 0).sum()) < lasso.n_features  # L1 keeps a few features


def test_trees_learn_from_tens_of_cells(tiny_store: Path, tmp_path: Path):
    from ctcid.evaluate import Split
    from ctcid.io import CellDataset
    from ctcid.models import read_meta
    from ctcid.train import TrainConfig, fit

    ds = CellDataset.open(tiny_store)
    split = Split(0, train=np.arange(16), val=np.arange(16, 32))  # two patients each side
    cfg = TrainConfig(model="features_gbm", channels=ds.channels, n_boot=0, gbm={"max_iter": 10})
    res = fit(ds, split, cfg, tmp_path / "auto")
    assert read_meta(tmp_path / "auto" / "model").model_kwargs["min_samples_leaf"] == 2
    assert res.val_metrics["roc_auc"] > 0.9  # it split the 16 cells
    old = fit(ds, split, cfg.replace(gbm={"min_samples_leaf": 10}), tmp_path / "ten")
    assert old.val_metrics["roc_auc"] == 0.5  # leaves of 10 cannot split 16 cells: a constant


def test_small_study_advice_names_the_feature_models(tiny_store: Path):
    from ctcid.io import CellDataset
    from ctcid.workflows import small_study_advice

    ds = CellDataset.open(tiny_store)
    (line,) = small_study_advice(ds, ["resnet18"])
    assert line.startswith("48 labelled cells (18 CTC): a small study") and "features_logreg" in line
    assert "resnet18" in line
    assert len(small_study_advice(ds, ["features_gbm"], samples_unknown=True)) == 2


def test_system_b_and_the_registry_know_the_linear_model():
    from ctcid.models import create_model, is_model, list_models
    from ctcid.train import TrainConfig
    from ctcid.workflows import system_b_variants

    assert "features_logreg" in system_b_variants(TrainConfig())
    assert is_model("features_logreg") and "features_logreg" in list_models("features_*")
    with pytest.raises(CtcidError, match="linear model"):
        create_model("features_logreg")


# ------------------------------------------------------------------------------------- without patient ids


def test_one_patient_is_refused_with_the_way_out(capsys, one_patient: Path, tmp_path: Path):
    for command in ("cv", "train"):
        code, _, err = _cli(capsys, command, one_patient, tmp_path / command, "--model", "features_logreg")
        (line,) = _error_lines(err)
        assert code == 2 and "--sample-regex" in line and "--samples-unknown" in line and "sample_id" in line
        assert not (tmp_path / command).exists()
    from ctcid.evaluate import patient_folds

    ids = np.repeat([f"P{i}" for i in range(5)], 4)
    with pytest.raises(CtcidError, match="use n_folds=3 or fewer"):
        patient_folds(ids, np.tile([1, 0, 0, 0], 5), n_folds=5)


def test_samples_unknown_splits_cells_and_marks_every_output(capsys, one_patient: Path, tmp_path: Path):
    out = tmp_path / "cv"
    args = ["--models", "features_logreg", "--samples-unknown", "--folds", "3", *FAST]
    code, _, err = _cli(capsys, "cv", one_patient, out, *args)
    assert code == 0, err
    mark = "patients unknown: metrics may be optimistic"
    assert mark in err
    assert mark in (out / "table.md").read_text()
    assert json.loads((out / "features_logreg" / "metrics.json").read_text())["patients_unknown"] == mark
    fold = out / "features_logreg" / "fold0"
    assert json.loads((fold / "run.json").read_text())["patients_unknown"] == mark
    assert json.loads((fold / "test_metrics.json").read_text())["patients_unknown"] == mark
    folds = pd.read_csv(fold / "folds.csv")
    assert folds["sample_id"].str.startswith("P0/").all() and folds["cells"].eq(1).all()  # one cell per group
    code, _, err = _cli(capsys, "report", fold, tmp_path / "r.html")
    assert code == 0, err
    assert "Patients unknown: metrics may be optimistic" in (tmp_path / "r.html").read_text()


# ---------------------------------------------------------------------------------------------------- ingest


def _rgb_png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8), "RGB").save(path)


def test_repeated_names_across_class_folders_get_path_ids(capsys, tmp_path: Path):
    src = tmp_path / "export"
    for k, cls in enumerate(("CTC", "WBC")):
        for i in range(3):
            _rgb_png(src / cls / f"c{i}.png", 40 * k + 10 * i)
    code, _, err = _cli(capsys, "ingest", src, tmp_path / "ds", "--layout", "class-folders")
    assert code == 0, err
    assert "file names repeat across class or sample folders" in err
    assert "every cell has the same sample id" in err and "--samples-unknown" in err
    from ctcid.io import CellDataset

    table = CellDataset.open(tmp_path / "ds").table
    assert sorted(table["cell_id"]) == [f"{c}/c{i}" for c in ("CTC", "WBC") for i in range(3)]
    assert dict(zip(table["cell_id"], table["label"], strict=True))["WBC/c0"] == "wbc"
    os.symlink(src / "CTC" / "c0.png", src / "CTC" / "again.png")  # the same image listed twice
    code, _, err = _cli(capsys, "ingest", src, tmp_path / "ds2", "--layout", "class-folders")
    (line,) = _error_lines(err)
    assert code == 2 and "the same image as cell" in line and not (tmp_path / "ds2").exists()


def test_deparray_class_folders_with_repeated_names(capsys, tmp_path: Path):
    src = tmp_path / "export"
    make_deparray(src / "ctc", samples=("P1",), cells=2, labels=False)
    make_deparray(src / "wbc", samples=("P1",), cells=2, seed=1, labels=False)
    code, _, err = _cli(capsys, "ingest", src, tmp_path / "ds")
    assert code == 0, err
    from ctcid.io import CellDataset

    table = CellDataset.open(tmp_path / "ds").table
    assert sorted(table["cell_id"]) == ["ctc/P1/P1_c00", "ctc/P1/P1_c01", "wbc/P1/P1_c00", "wbc/P1/P1_c01"]
    assert table.set_index("cell_id").loc["wbc/P1/P1_c00", "label"] == "wbc"


def test_manifest_listing_one_image_twice_is_refused(capsys, tmp_path: Path):
    make_deparray(tmp_path / "exp", samples=("P1",), cells=2, channels=("BF",), labels=False)
    rows = "cell_id,sample_id,BF\na,P1,P1/P1_c00_BF.tif\nb,P1,P1/P1_c00_BF.tif\n"
    (tmp_path / "exp" / "manifest.csv").write_text(rows)
    code, _, err = _cli(capsys, "ingest", tmp_path / "exp", tmp_path / "ds")
    (line,) = _error_lines(err)
    assert code == 2 and "the same image as cell a" in line


# ---------------------------------------------------------------------------- failures leave nothing behind


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _failing_commands(tiny_store: Path, tmp_path: Path) -> dict[str, list[object]]:
    src = tmp_path / "src"
    make_deparray(src / "export")
    (src / "bad.csv").write_text("sample_id,time_months\nP1,3\n")
    return {
        "synth": ["synth", tmp_path / "o", "--patients", "1", "--size", "8"],
        "ingest": ["ingest", src / "export", tmp_path / "o", "--channels", "BF,FITC"],
        "cohort": ["cohort", tmp_path / "o", tiny_store, src / "export"],
        "detect": ["detect", src / "export", tmp_path / "o"],
        "train": ["train", tiny_store, tmp_path / "o", "--model", "no_such_net", *FAST],
        "train-refused": ["train", tiny_store, tmp_path / "o", "--val-fraction", "0.9"],
        "cv": ["cv", tiny_store, tmp_path / "o", "--models", "features_logreg,no_such_net", "--folds", "2", *FAST],
        "ablate": ["ablate", tiny_store, tmp_path / "o", "--system", "C"],
        "evaluate": ["evaluate", src / "export", tiny_store, tmp_path / "o"],
        "predict": ["predict", src / "export", tiny_store, tmp_path / "o"],
        "explain": ["explain", src / "export", tiny_store, tmp_path / "o"],
        "survival": ["survival", src / "bad.csv", tmp_path / "o", "--counts", f"a={src / 'bad.csv'}"],
        "demo": ["demo", tmp_path / "o", "--difficulty", "impossible"],
    }


@pytest.mark.parametrize(
    "command",
    [
        "synth",
        "ingest",
        "cohort",
        "detect",
        "train",
        "train-refused",
        "cv",
        "ablate",
        "evaluate",
        "predict",
        "explain",
        "survival",
        "demo",
    ],
)
def test_a_failed_command_leaves_no_output(capsys, tiny_store: Path, tmp_path: Path, command: str):
    args = _failing_commands(tiny_store, tmp_path)[command]
    before = _entries(tmp_path)
    code, _, err = _cli(capsys, *args)
    assert code == 2, err
    assert len(_error_lines(err)) == 1 and "Traceback" not in err
    assert _entries(tmp_path) == before, f"{command} left {_entries(tmp_path) - before}"


def test_a_run_that_fails_before_training_leaves_nothing(capsys, monkeypatch, tiny_store: Path, tmp_path: Path):
    import ctcid.train.linear as linear

    def broken(*_a, **_k):
        raise CtcidError("no C fits")

    monkeypatch.setattr(linear, "choose_c", broken)
    for command, flag in (("train", "--model"), ("cv", "--models")):
        args = [command, tiny_store, tmp_path / command, flag, "features_logreg", "--folds", "2", *FAST]
        code, _, err = _cli(capsys, *args)
        assert code == 2 and _error_lines(err) == ["ctcid: error: no C fits"]
        assert _entries(tmp_path) == set()


def test_a_failed_network_run_keeps_its_checkpoint_for_resume(capsys, monkeypatch, tiny_store: Path, tmp_path):
    import ctcid.train.engine as engine

    def broken(*_a, **_k):
        raise CtcidError("calibration failed")

    monkeypatch.setattr(engine, "finish", broken)
    args = ["--model", "resnet10t", "--epochs", "1", "--batch-size", "16", "--input-size", "16", *FAST]
    code, _, err = _cli(capsys, "train", tiny_store, tmp_path / "run", *args)
    (line,) = _error_lines(err)
    assert code == 2 and "calibration failed" in line and "keeps the checkpoint" in line and "--resume" in line
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    closed = False

    def write(self, _data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # flushing fails again


def test_ingest_into_a_full_disk_is_one_line_and_leaves_nothing(capsys, monkeypatch, tmp_path: Path):
    from ctcid.io import store

    make_deparray(tmp_path / "export")
    init = store.DatasetWriter.__init__

    def full(self, *a, **k):
        init(self, *a, **k)
        self._fh.close()
        self._fh = _FullDisk()

    monkeypatch.setattr(store.DatasetWriter, "__init__", full)
    code, _, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds", "--workers", "0")
    (line,) = _error_lines(err)
    assert (
        code == 2 and line == f"ctcid: error: {tmp_path / 'ds'}: no space left on device while writing pixels.u16"
    )
    assert _entries(tmp_path) == {"export"}


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EROFS])
def test_train_on_a_full_or_read_only_disk_leaves_nothing(capsys, monkeypatch, tiny_store, tmp_path, err_no):
    import ctcid.io._atomic as atomic

    def fail(_fd: int) -> None:
        raise OSError(err_no, os.strerror(err_no))

    monkeypatch.setattr(atomic.os, "fsync", fail)
    code, _, err = _cli(capsys, "train", tiny_store, tmp_path / "run", "--model", "features_logreg", *FAST)
    (line,) = _error_lines(err)
    assert code == 2 and line.startswith(f"ctcid: error: {tmp_path / 'run'}: {os.strerror(err_no).lower()}")
    assert "while writing config.yaml" in line and not (tmp_path / "run").exists()


def test_a_read_only_output_folder_is_one_line(capsys, monkeypatch, tiny_store: Path, tmp_path: Path):
    import ctcid.io._atomic as atomic

    real = atomic.os.replace

    def read_only(src, dst):
        if Path(dst).name == "o":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src), None, str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", read_only)
    code, _, err = _cli(capsys, "synth", tmp_path / "o", "--patients", "1", "--cells-per-patient", "2")
    (line,) = _error_lines(err)
    assert code == 2 and line == f"ctcid: error: {tmp_path / 'o'}: read-only file system while writing o"
    assert _entries(tmp_path) == set()


def test_an_input_that_vanishes_mid_run_is_one_line(capsys, monkeypatch, tmp_path: Path):
    import importlib

    ingest_module = importlib.import_module("ctcid.io.ingest")
    make_deparray(tmp_path / "export")
    plan = ingest_module.plan_ingest

    def plan_then_vanish(*a, **k):
        found = plan(*a, **k)
        (tmp_path / "export" / "P2" / "P2_c01_CK.tif").unlink()
        return found

    monkeypatch.setattr(ingest_module, "plan_ingest", plan_then_vanish)
    code, _, err = _cli(capsys, "ingest", tmp_path / "export", tmp_path / "ds", "--workers", "0")
    (line,) = _error_lines(err)
    assert code == 2 and "P2_c01_CK.tif" in line and "No such file" in line
    assert _entries(tmp_path) == {"export"}


def test_an_environment_error_outside_any_output_is_one_line(capsys, monkeypatch, tmp_path: Path):
    import ctcid.workflows

    def gone(*_a, **_k):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "pixels.u16"))

    monkeypatch.setattr(ctcid.workflows, "train_on_dataset", gone)
    code, _, err = _cli(capsys, "train", tmp_path, tmp_path / "run")
    assert code == 2 and _error_lines(err) == [
        f"ctcid: error: {tmp_path / 'pixels.u16'}: moved or removed while ctcid was running"
    ]


# ------------------------------------------------------------------------------------------------- benchmark


def test_small_cohort_export_repeats_names_across_classes(tmp_path: Path):
    from PIL import Image

    from ctcid.bench.small_cohorts import small_cohort_export

    out = small_cohort_export(tmp_path / "exp", patients=2, cells_per_patient=5, seed=0, size=32)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(files) == 10 and {f.split("/")[0] for f in files} == {"CTC", "WBC"}
    names = [f.split("/")[1] for f in files]
    assert len(set(names)) < len(names)  # numbered from 1 in each class folder
    image = Image.open(out / files[0])
    assert image.mode == "RGB" and image.size == (32, 32)


def test_pooled_auc_and_its_paired_difference():
    from ctcid.bench.small_cohorts import pooled_auc, small_cohorts_markdown

    y = np.tile([1, 0, 0, 1, 0], 8)
    frame = pd.DataFrame(
        {
            "label": np.where(y == 1, "ctc", "wbc"),
            "cluster": np.repeat([f"s:{i}" for i in range(8)], 5),
            "p_a": y + 0.0,  # perfect
            "p_b": np.tile([0.2, 0.9, 0.1, 0.8, 0.3], 8),  # 3 of 6 CTC-WBC pairs ranked right
        }
    )
    res = pooled_auc(frame, ["a", "b"], n_boot=200, seed=0)
    assert res["models"]["a"]["roc_auc"] == 1.0 and res["models"]["a"]["lo"] == 1.0
    b = res["models"]["b"]
    assert b["roc_auc"] == pytest.approx(0.5) and b["a_minus"] == pytest.approx(0.5)
    assert b["a_minus_lo"] <= b["a_minus"] <= b["a_minus_hi"] and b["a_at_least_as_good"] == 1.0
    row = {"roc_auc": 0.9, "lo": 0.8, "hi": 1.0, "features_logreg_minus": 0.1}
    row |= {"features_logreg_minus_lo": 0.0, "features_logreg_minus_hi": 0.2}
    record = {
        "config": {"channels": ["CK", "CD45", "DAPI"], "crop_px": 48, "difficulty": "hard", "ctc_share": 0.4}
        | {"seeds": 1, "input_size": 32, "epochs": 2, "n_boot": 10},
        "machine": {"cores": 2, "cpu": "cpu"},
        "seconds": 1.0,
        "settings": [
            {"patients": 4, "cells_per_patient": 6, "cells": 24, "ctc": 8}
            | {"models": {"features_logreg": row, "features_gbm": row, "resnet18": row}}
        ],
        "per_seed": [
            {"patients": 4, "cells_per_patient": 6, "folds": 2, "features_logreg": 1.0}
            | {"features_gbm": 0.5, "resnet18": 0.5}
        ],
        "patients_unknown": None,
        "checks": {"logreg_at_least_as_good": True},
    }
    text = small_cohorts_markdown(record)
    assert "| 4 patients x 6 cells |" in text and "+0.100 [+0.000, +0.200]" in text and ": holds." in text
