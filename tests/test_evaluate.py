"""Tests of ctcid.evaluate: patient-grouped splits, metrics, bootstrap, counts, tables and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ctcid.errors import CtcidError
from ctcid.evaluate import (
    METRICS,
    THRESHOLD_RULES,
    Split,
    bootstrap_metrics,
    check_no_leakage,
    classification_metrics,
    decision_threshold,
    evaluate_predictions,
    fold_table,
    patient_folds,
    plot_calibration,
    plot_confusion,
    plot_model_comparison,
    plot_pr_roc,
    plot_training_curves,
    read_fold_table,
    splits_from_table,
    summarise_folds,
    threshold_half_max_f1,
    threshold_max_f1,
    to_markdown,
    train_val_split,
    write_fold_table,
)
from ctcid.evaluate.metrics import _metrics_from_weights, _patient_weights


def cohort(n_patients: int = 20, cells: int = 30, seed: int = 0, unlabelled: int = 0):
    """Patients with varying CTC fractions (some none); returns sample_ids (str), labels (-1/0/1), scores."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i in range(n_patients):
        frac = 0.0 if i % 4 == 3 else rng.uniform(0.05, 0.3)
        lab = (rng.random(cells) < frac).astype(np.int64)
        if frac > 0 and not lab.any():
            lab[0] = 1
        ids += [f"P{i:03d}"] * cells
        labels.append(lab)
    y = np.concatenate(labels)
    if unlabelled:
        y[rng.choice(y.size, unlabelled, replace=False)] = -1
    p = np.clip(rng.normal(0.3 + 0.35 * (y == 1), 0.18), 0, 1)
    return np.array(ids), y, p


def patients(ids: np.ndarray, idx: np.ndarray) -> set[str]:
    return set(ids[idx].tolist())


# ----------------------------------------------------------------------------------------------- splits


def test_patient_folds_group_by_patient_and_cover_every_labelled_cell_once():
    ids, y, _ = cohort(n_patients=20, unlabelled=25)
    y_before = y.copy()
    folds = patient_folds(ids, y, n_folds=5, seed=0)
    assert [f.fold for f in folds] == list(range(5))
    labelled = np.flatnonzero(y >= 0)
    for f in folds:
        check_no_leakage(ids, f)
        tr, va, te = patients(ids, f.train), patients(ids, f.val), patients(ids, f.test)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert tr and va and te
        assert (y[f.train] == 1).any() and (y[f.val] == 1).any()
        used = np.concatenate([f.train, f.val, f.test])
        assert np.array_equal(np.sort(used), labelled)  # all labelled cells, no unlabelled one
        assert all(np.array_equal(a, np.sort(a)) and a.dtype == np.int64 for a in (f.train, f.val, f.test))
    test_cells = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(test_cells), labelled)  # each labelled cell in exactly one test fold
    assert np.array_equal(y, y_before)


def test_patient_folds_deterministic_per_seed_and_differ_across_seeds():
    ids, y, _ = cohort(n_patients=20)
    a = patient_folds(ids, y, n_folds=4, seed=3)
    b = patient_folds(list(ids), pd.Series(y), n_folds=4, seed=3)
    c = patient_folds(ids, y, n_folds=4, seed=4)
    assert a == b
    assert a != c


def test_patient_folds_accept_class_names():
    ids, y, _ = cohort(n_patients=10, unlabelled=5)
    names = np.array(["ctc" if v == 1 else "wbc" if v == 0 else None for v in y], dtype=object)
    assert patient_folds(ids, names, n_folds=3) == patient_folds(ids, y, n_folds=3)


def test_patient_folds_refuse_too_few_patients_and_bad_n_folds():
    ids, y, _ = cohort(n_patients=6)
    with pytest.raises(CtcidError, match="too few for 5 folds"):
        patient_folds(ids, y, n_folds=5)
    with pytest.raises(CtcidError, match="at least 2"):
        patient_folds(ids, y, n_folds=1)


def test_patient_folds_refuse_a_fold_without_ctc_in_validation():
    # CTCs in only 2 of 10 patients: the fold that tests one of them keeps one CTC patient for train+val.
    ids = np.repeat([f"P{i}" for i in range(10)], 10)
    y = np.zeros(100, dtype=np.int64)
    y[[0, 1, 10, 11]] = 1
    with pytest.raises(CtcidError, match=r"fold \d: the validation set would hold no CTC.*fewer folds"):
        patient_folds(ids, y, n_folds=5, seed=0)


def test_check_no_leakage_names_the_leaking_patient():
    ids = ["A", "A", "B", "C", "C"]
    check_no_leakage(ids, Split(0, train=[0, 1], val=[2], test=[3, 4]))
    with pytest.raises(CtcidError, match=r"fold 2: 1 patient\(s\).*A \(train\+test\)") as err:
        check_no_leakage(ids, Split(2, train=[0, 2], val=[], test=[1, 3]))
    assert "B" not in str(err.value).split(":", 2)[2]
    many = [f"P{i}" for i in range(8) for _ in range(2)]
    with pytest.raises(CtcidError, match=r"8 patient.*and 3 more"):
        check_no_leakage(many, Split(0, train=np.arange(0, 16, 2), val=np.arange(1, 16, 2)))


def test_train_val_split_is_grouped_with_ctc_on_both_sides():
    ids, y, _ = cohort(n_patients=15, unlabelled=10)
    s = train_val_split(ids, y, val_fraction=0.2, seed=1)
    assert s.fold == 0 and s.test.size == 0
    assert not patients(ids, s.train) & patients(ids, s.val)
    assert (y[s.val] == 1).any() and (y[s.train] == 1).any()
    assert np.array_equal(np.sort(np.r_[s.train, s.val]), np.flatnonzero(y >= 0))
    assert 1 <= len(patients(ids, s.val)) <= 6
    assert train_val_split(ids, y, val_fraction=0.2, seed=1) == s


def test_fold_table_round_trip(tmp_path: Path):
    ids, y, _ = cohort(n_patients=12, unlabelled=8)
    ids = np.array([f"00{s[1:]}" for s in ids])  # leading zeros must survive the CSV
    folds = patient_folds(ids, y, n_folds=3, seed=2)
    table = fold_table(ids, folds, labels=y)
    assert list(table.columns) == ["fold", "sample_id", "role", "cells", "ctc"]
    assert not table.duplicated(["fold", "sample_id"]).any()
    assert table["cells"].sum() == 3 * (y >= 0).sum()
    assert table["ctc"].sum() == 3 * (y == 1).sum()
    assert set(table["role"]) == {"train", "val", "test"}
    assert splits_from_table(table, ids, labels=y) == folds
    path = write_fold_table(table, tmp_path / "folds.csv")
    assert splits_from_table(read_fold_table(path), ids, labels=y) == folds
    with pytest.raises(CtcidError, match="another version of the dataset"):
        splits_from_table(table, ids)  # unlabelled cells would be added: counts disagree
    with pytest.raises(CtcidError, match="not in the dataset"):
        splits_from_table(table, np.where(ids == ids[0], "X", ids), labels=y)


def test_splits_from_table_refuses_a_patient_listed_twice():
    table = pd.DataFrame({"fold": [0, 0, 0], "sample_id": ["A", "B", "A"], "role": ["train", "val", "test"]})
    with pytest.raises(CtcidError, match="twice in one fold"):
        splits_from_table(table, ["A", "B"])


# ---------------------------------------------------------------------------------------------- metrics


def test_threshold_max_f1_exact_values():
    # thresholds 0.8: F1 2/3; 0.4: 1/2; 0.35: 0.8 (best); 0.1: 2/3. Midpoint of 0.35 and 0.1.
    assert threshold_max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.225, abs=1e-12)
    # best is the top score alone (F1 = 1); next lower distinct score 0.3 (ties collapse)
    assert threshold_max_f1([0, 0, 0, 1, 1], [0.3, 0.3, 0.2, 0.9, 0.9]) == pytest.approx(0.6, abs=1e-12)
    # every cell must be called to reach the best F1: midpoint between the lowest score and 0
    assert threshold_max_f1([1, 1], [0.4, 0.7]) == pytest.approx(0.2, abs=1e-12)
    assert threshold_max_f1([0, 0, 0], [0.1, 0.9, 0.5]) == 0.5


def test_threshold_max_f1_gives_the_best_f1_on_random_scores():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.15).astype(int)
    p = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1).round(2)
    t = threshold_max_f1(y, p)
    best = max(f1_score(y, p >= c) for c in np.unique(p))
    assert f1_score(y, p >= t) == pytest.approx(best)
    assert not np.isin(t, p)  # strictly between two scores


def test_threshold_half_max_f1_exact_values():
    # best F1 0.8 (at 0.35): threshold 0.4
    assert threshold_half_max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.4, abs=1e-12)
    # perfectly separated: F1 1, threshold 0.5 whatever the scores
    assert threshold_half_max_f1([0, 0, 1], [0.01, 0.02, 0.03]) == pytest.approx(0.5)
    assert threshold_half_max_f1([0, 0, 0], [0.1, 0.9, 0.5]) == 0.5
    assert decision_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "max-f1") == pytest.approx(0.225)
    assert decision_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.225)  # the default
    assert decision_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "half-max-f1") == pytest.approx(0.4)
    assert set(THRESHOLD_RULES) == {"half-max-f1", "max-f1"}
    with pytest.raises(ValueError, match="unknown threshold rule"):
        decision_threshold([0, 1], [0.2, 0.8], "youden")


def test_half_max_f1_transfers_better_than_max_f1_from_a_small_validation_set():
    # Calibrated probabilities (labels drawn from p itself), 200 validation cells with ~24 CTCs as in a small
    # study, thresholds applied to 5,000 new cells: the half-F1* rule is more stable and scores higher on average.
    rng = np.random.default_rng(3)

    def cells(n: int) -> tuple[np.ndarray, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-rng.normal(-2.6, 2.0, n)))
        return (rng.random(n) < p).astype(int), p

    y_test, p_test = cells(5000)
    f1 = {"half-max-f1": [], "max-f1": []}
    thresholds = {"half-max-f1": [], "max-f1": []}
    for _ in range(200):
        y_val, p_val = cells(200)
        for rule in f1:
            t = decision_threshold(y_val, p_val, rule)
            thresholds[rule].append(t)
            f1[rule].append(f1_score(y_test, p_test >= t))
    gain = np.asarray(f1["half-max-f1"]) - np.asarray(f1["max-f1"])
    assert gain.mean() > 0.005 and (gain > 0).mean() > 0.5
    assert np.std(thresholds["half-max-f1"]) < 0.5 * np.std(thresholds["max-f1"])


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.2).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    t = 0.5
    m = classification_metrics(pd.Series(y), list(p), t)
    pred = p >= t
    assert list(m) == list(METRICS)
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    tn = np.sum((y == 0) & ~pred)
    fp = np.sum((y == 0) & pred)
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["balanced_accuracy"] == pytest.approx((m["recall"] + m["specificity"]) / 2)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (
        np.sum((y == 1) & pred),
        fp,
        tn,
        np.sum((y == 1) & ~pred),
    )
    assert (m["n"], m["n_ctc"]) == (500, y.sum())


def test_classification_metrics_one_class_gives_nan_not_exception():
    m = classification_metrics([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    for k in ("recall", "balanced_accuracy", "mcc", "roc_auc", "pr_auc"):
        assert np.isnan(m[k]), k
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["f1"] == 0.0 and m["precision"] == 0.0
    perfect = classification_metrics([0, 0], [0.1, 0.2], 0.5)
    assert np.isnan(perfect["f1"]) and perfect["accuracy"] == 1.0
    m = classification_metrics([1, 1], [0.9, 0.2], 0.5)
    assert np.isnan(m["specificity"]) and np.isnan(m["roc_auc"]) and m["recall"] == 0.5
    with pytest.raises(CtcidError, match="unlabelled"):
        classification_metrics([1, -1], [0.9, 0.2], 0.5)


# -------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_vectorised_metrics_equal_explicit_resamples():
    ids, y, p = cohort(n_patients=12, cells=25, seed=5)
    p = p.round(2)  # ties in scores
    _, patient = np.unique(ids, return_inverse=True)
    w = np.random.default_rng(0).integers(0, 3, size=(6, 12))
    w[0] = 1
    got = _metrics_from_weights(w, patient, y, p, 0.5)
    for b in range(w.shape[0]):
        cells = np.concatenate([np.repeat(np.flatnonzero(patient == j), w[b, j]) for j in range(12)])
        ref = classification_metrics(y[cells], p[cells], 0.5)
        for k in METRICS:
            assert got[k][b] == pytest.approx(ref[k], nan_ok=True), (b, k)


def test_bootstrap_interval_contains_estimate_narrows_and_is_deterministic():
    ids, y, p = cohort(n_patients=10, cells=40, seed=1)
    small = bootstrap_metrics(y, p, 0.5, ids, n_boot=400, seed=0).set_index("metric")
    assert list(small.columns) == ["value", "lo", "hi", "interval"]
    assert small.loc["f1", "interval"] == "patients" and small.loc["tp", "interval"] == ""
    assert np.isnan(small.loc[["tp", "fp", "tn", "fn", "n", "n_ctc"], ["lo", "hi"]].to_numpy()).all()
    point = classification_metrics(y, p, 0.5)
    for k in ("f1", "recall", "specificity", "roc_auc", "pr_auc", "brier"):
        assert small.loc[k, "value"] == pytest.approx(point[k])
        assert small.loc[k, "lo"] <= small.loc[k, "value"] <= small.loc[k, "hi"]
    ids2, y2, p2 = cohort(n_patients=80, cells=40, seed=1)
    large = bootstrap_metrics(y2, p2, 0.5, ids2, n_boot=400, seed=0).set_index("metric")
    width = lambda df, k: df.loc[k, "hi"] - df.loc[k, "lo"]  # noqa: E731
    for k in ("f1", "recall", "roc_auc"):
        assert width(large, k) < width(small, k)
    again = bootstrap_metrics(y, p, 0.5, ids, n_boot=400, seed=0).set_index("metric")
    pd.testing.assert_frame_equal(again, small)
    other = bootstrap_metrics(y, p, 0.5, ids, n_boot=400, seed=1).set_index("metric")
    assert not other.equals(small)


def test_bootstrap_resamples_patients_not_cells():
    # All 50 CTCs sit in patient P00 and 30 of them are found. Resampling patients: every resample with P00 has
    # recall exactly 0.6 (resamples without it are dropped). Resampling cells gives a spread of recalls.
    ids = np.repeat([f"P{i:02d}" for i in range(20)], 50)
    y = np.zeros(ids.size, dtype=int)
    y[:50] = 1
    p = np.full(ids.size, 0.1)
    p[:30] = 0.9
    df = bootstrap_metrics(y, p, 0.5, ids, n_boot=1000, seed=0, interval="patients").set_index("metric")
    assert df.loc["recall", "lo"] == df.loc["recall", "hi"] == df.loc["recall", "value"] == 0.6
    cells = bootstrap_metrics(y, p, 0.5, ids, n_boot=1000, seed=0, interval="cells").set_index("metric")
    assert cells.loc["recall", "lo"] < 0.5 < 0.7 < cells.loc["recall", "hi"]
    # one patient with a CTC: "auto" cannot resample patients and says so
    auto = bootstrap_metrics(y, p, 0.5, ids, n_boot=200, seed=0).set_index("metric")
    assert auto.loc["recall", "interval"] == "cells"


def test_stratified_bootstrap_keeps_each_stratum_size():
    # Stratum "x": 6 patients with every CTC found; stratum "y": 4 patients with none found. Resampled within
    # strata, every resample holds 6 patients of x and 4 of y, so recall is exactly 0.6 each time; resampled
    # together the mix varies and so does recall.
    ids = np.repeat([f"P{i}" for i in range(10)], 10)
    y = np.tile(np.r_[np.ones(3), np.zeros(7)], 10).astype(int)
    found = np.isin(ids, [f"P{i}" for i in range(6)])
    p = np.where(found & (y == 1), 0.9, 0.1)
    strata = {f"P{i}": "x" if i < 6 else "y" for i in range(10)}
    kw = {"n_boot": 500, "seed": 0, "interval": "patients"}
    st = bootstrap_metrics(y, p, 0.5, ids, strata=strata, **kw).set_index("metric")
    assert st.loc["recall", "lo"] == st.loc["recall", "hi"] == st.loc["recall", "value"] == 0.6
    free = bootstrap_metrics(y, p, 0.5, ids, **kw).set_index("metric")
    assert free.loc["recall", "lo"] < 0.45 and free.loc["recall", "hi"] > 0.75
    assert free.loc["recall", "value"] == 0.6

    w = _patient_weights(np.random.default_rng(0), 10, 200, np.r_[np.zeros(6), np.ones(4)].astype(np.int64))
    assert (w[:, :6].sum(1) == 6).all() and (w[:, 6:].sum(1) == 4).all() and w[:, :6].max() > 1
    # without strata the draws are those of a plain patient bootstrap
    plain = _patient_weights(np.random.default_rng(3), 10, 50)
    draws = np.random.default_rng(3).integers(0, 10, size=(50, 10))
    assert (plain == np.stack([np.bincount(d, minlength=10) for d in draws])).all()
    with pytest.raises(CtcidError, match="no stratum for patient.*P9"):
        bootstrap_metrics(y, p, 0.5, ids, strata={k: v for k, v in strata.items() if k != "P9"}, **kw)


def test_cell_bootstrap_stays_within_patients():
    # Patient A: all CTCs called; patient B: none called. Resampling cells within patients keeps 10 CTCs of each
    # patient in every resample, so recall stays near 0.5; it never collapses to 0 or 1 as a patient resample does.
    ids = np.repeat(["A", "B"], 20)
    y = np.tile(np.r_[np.ones(10), np.zeros(10)], 2).astype(int)
    p = np.where((ids == "A") & (y == 1), 0.9, 0.1)
    df = bootstrap_metrics(y, p, 0.5, ids, n_boot=500, seed=0, interval="cells").set_index("metric")
    assert df.loc["recall", "value"] == 0.5
    assert 0.2 < df.loc["recall", "lo"] < 0.5 < df.loc["recall", "hi"] < 0.8
    pat = bootstrap_metrics(y, p, 0.5, ids, n_boot=500, seed=0, interval="patients").set_index("metric")
    assert pat.loc["recall", "lo"] == 0.0 and pat.loc["recall", "hi"] == 1.0


# ----------------------------------------------------------------------------------------------- counts


def test_evaluate_predictions_reports_its_interval_method():
    ids, y, p = cohort(n_patients=8, cells=20, seed=3)
    r = evaluate_predictions(y, p, ids, threshold=0.5, n_boot=50)
    m = r["metrics"].set_index("metric")["value"]
    assert m["f1"] == pytest.approx(classification_metrics(y, p, 0.5)["f1"])
    assert r["interval"] == "cells" and "too few to resample patients" in r["note"] and r["n_patients"] == 8
    calls = p >= 0.7
    r2 = evaluate_predictions(y, p, ids, calls=calls, n_boot=0, interval="patients")
    assert r2["metrics"].set_index("metric").loc["tp", "value"] == ((y == 1) & calls).sum()
    assert r2["note"].startswith("95% intervals resample the 8 patients")


# ------------------------------------------------------------------------------------------------ tables


def test_summarise_folds():
    df = summarise_folds([{"fold": 0, "f1": 0.6, "auc": 0.9}, {"fold": 1, "f1": 0.8, "auc": float("nan")}])
    assert df["metric"].tolist() == ["f1", "auc"]
    row = df.set_index("metric").loc["f1"]
    assert (row["mean"], row["min"], row["max"], row["n"]) == pytest.approx((0.7, 0.6, 0.8, 2))
    assert row["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert df.set_index("metric").loc["auc", "mean"] == 0.9


def test_to_markdown_format():
    df = pd.DataFrame({"model": ["resnet50", "a|b"], "f1": [0.79812, np.nan], "folds": [5, 12]})
    assert to_markdown(df) == (
        "| model    |    f1 | folds |\n"
        "|:---------|------:|------:|\n"
        "| resnet50 | 0.798 |     5 |\n"
        "| a\\|b     |       |    12 |"
    )
    assert to_markdown(df[["f1"]], floatfmt=".1%").splitlines()[2] == "| 79.8% |"


# ------------------------------------------------------------------------------------------------- plots


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert np.asarray(im.convert("L"), dtype=float).std() > 0


def test_plots_write_non_blank_pngs(tmp_path: Path):
    _, y, p = cohort(n_patients=6, cells=40, seed=4)
    outs = [
        plot_pr_roc(y, p, tmp_path / "pr_roc.png", threshold=0.5, title="test"),
        plot_pr_roc(np.zeros(5, int), np.linspace(0, 1, 5), tmp_path / "pr_roc_one_class.png"),
        plot_confusion(y, p >= 0.5, tmp_path / "confusion.png"),
        plot_calibration(y, p, tmp_path / "calibration.png", n_bins=8),
        plot_calibration(y, p, tmp_path / "calibration_q.png", strategy="quantile"),
        plot_training_curves(
            pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.5, 0.4], "val_f1": [0.3, 0.5, 0.6]}),
            tmp_path / "sub" / "history.png",
        ),
        plot_model_comparison(
            pd.DataFrame(
                {"model": ["a"] * 3 + ["b"] * 3, "fold": [0, 1, 2] * 2, "f1": [0.5, 0.6, 0.55, 0.7, 0.8, 0.75]}
            ),
            tmp_path / "models.png",
        ),
    ]
    for out in outs:
        assert out.exists()
        assert_png(out)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    with pytest.raises(CtcidError, match="none of the columns"):
        plot_training_curves(pd.DataFrame({"epoch": [1]}), tmp_path / "x.png")


def _fake_cv_run(root: Path, seed: int, folds: int = 4) -> None:
    """A run folder as ``ctcid cv`` leaves it: ``fold*/`` with calibrated validation and held-out predictions of
    three patients each (labels drawn from the probabilities, so they are calibrated)."""
    rng = np.random.default_rng(seed)
    for k in range(folds):
        for name in ("val", "test"):
            ids = np.repeat([f"P{k}{name}{i}" for i in range(3)], 60)
            p = 1.0 / (1.0 + np.exp(-rng.normal(-2.6, 2.0, ids.size)))
            label = np.where(rng.random(ids.size) < p, "ctc", "wbc")
            (root / f"fold{k}").mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame({"cell_id": np.arange(ids.size), "sample_id": ids, "label": label, "p_ctc": p})
            frame.to_csv(root / f"fold{k}" / f"{name}_predictions.csv", index=False)


def test_bench_thresholds_rescores_every_fold_with_each_rule(tmp_path: Path):
    from ctcid.bench import bench_thresholds

    for root, seed in (("a/run", 0), ("b/run/resnet18", 1)):  # two runs whose last folder names agree
        _fake_cv_run(tmp_path / root, seed)
    r = bench_thresholds(
        runs=(str(tmp_path / "a" / "run"), str(tmp_path / "b")), n_boot=100, markdown=tmp_path / "t.md"
    )
    names = list(r["groups"])
    assert len(names) == 2 and names[0].endswith("a/run") and names[1].endswith("b/run/resnet18")
    g = r["groups"][names[0]]
    assert g["folds"] == 4 and g["patients"] == 12
    # pooled F1 of each rule: the calls each fold's own threshold makes on its held-out cells
    calls = {rule: [] for rule in THRESHOLD_RULES}
    ys = []
    for k in range(4):
        val = pd.read_csv(tmp_path / "a" / "run" / f"fold{k}" / "val_predictions.csv")
        test = pd.read_csv(tmp_path / "a" / "run" / f"fold{k}" / "test_predictions.csv")
        ys.append(test["label"] == "ctc")
        for rule in THRESHOLD_RULES:
            calls[rule].append(test["p_ctc"] >= decision_threshold(val["label"] == "ctc", val["p_ctc"], rule))
    for rule in THRESHOLD_RULES:
        assert g["f1"][rule] == pytest.approx(f1_score(np.concatenate(ys), np.concatenate(calls[rule])))
    assert g["f1_diff"] == pytest.approx(g["f1"]["half-max-f1"] - g["f1"]["max-f1"])
    assert g["f1_diff_lo"] <= g["f1_diff"] <= g["f1_diff_hi"]
    assert g["threshold_sd"]["half-max-f1"] < g["threshold_sd"]["max-f1"]
    assert r["summary"]["folds"] == 8 and r["summary"]["groups"] == 2
    assert "half-max-f1" in (tmp_path / "t.md").read_text() and names[1] in (tmp_path / "t.md").read_text()


def test_bench_thresholds_refuses_a_folder_without_fold_predictions(capsys, tmp_path: Path):
    from ctcid.cli import run

    (tmp_path / "empty" / "fold0").mkdir(parents=True)
    with pytest.raises(SystemExit) as info:
        run(["bench", "thresholds", "--runs", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no fold*/ folder with val_predictions.csv" in err and "Traceback" not in err
