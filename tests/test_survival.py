"""Tests of the survival analysis of CTC counts and of the synthetic outcome generator."""

from __future__ import annotations

import doctest
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

import ctcid.survival.analysis
import ctcid.survival.data
import ctcid.survival.html
import ctcid.survival.stats
import ctcid.synth.outcomes
from ctcid.cli import run
from ctcid.errors import CtcidError
from ctcid.survival import (
    agreement,
    bootstrap_intervals,
    c_index,
    cohen_kappa,
    km_table,
    logrank,
    optimal_cutoff,
    parse_count_columns,
    read_clinical,
    read_counts,
    survival_analysis,
    survival_section_html,
)
from ctcid.synth import OutcomeModel, SynthConfig, sample_outcomes
from ctcid.synth.cohort import _patient_table
from ctcid.synth.presets import PRESETS

# ----------------------------------------------------------------------------------------------- helpers


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _cohort(n: int = 60, seed: int = 0, events: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A clinical table whose hazard rises with the count, manual counts and noisy predicted counts."""
    rng = np.random.default_rng(seed)
    count = np.where(rng.random(n) < 0.3, 0, rng.poisson(4, n))
    time = rng.exponential(40 / (1 + count))
    clinical = pd.DataFrame(
        {
            "sample_id": [f"P{i:03d}" for i in range(n)],
            "time_months": np.round(time, 2),
            "event": (rng.random(n) < 0.8).astype(int) if events else np.zeros(n, int),
            "age": rng.integers(40, 85, n),
            "stage": rng.choice(["III", "IV"], n),
        }
    )
    manual = pd.DataFrame({"sample_id": clinical["sample_id"], "true_ctc": count})
    predicted = pd.DataFrame(
        {
            "sample_id": clinical["sample_id"],
            "cells": 30,
            "predicted_ctc": count + rng.poisson(0.5, n),
            "expected_ctc": np.round(count + rng.normal(0, 1, n).clip(-count, None), 3),
        }
    )
    return clinical, manual, predicted


def _write(tmp: Path, **frames: pd.DataFrame) -> dict[str, Path]:
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


# ----------------------------------------------------------------------------------------------- statistics


def test_kaplan_meier_matches_hand_computation():
    # times 1..6, censored at 2 and 5: S = 5/6, then x 3/4 at t=3, x 2/3 at t=4, x 0/1 at t=6
    table = km_table([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1])
    assert table["time"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table["at_risk"].tolist() == [6, 5, 4, 3, 2, 1]
    expected = [5 / 6, 5 / 6, 5 / 6 * 3 / 4, 5 / 6 * 3 / 4 * 2 / 3, 5 / 6 * 3 / 4 * 2 / 3, 0.0]
    np.testing.assert_allclose(table["survival"], expected, atol=1e-12)
    # Greenwood's exponential ("log-log") interval at t = 1: var = sum d / (n (n - d)) / log(S)^2
    s = 5 / 6
    sd = math.sqrt((1 / 30) / math.log(s) ** 2)
    lo, hi = s ** math.exp(1.959964 * sd), s ** math.exp(-1.959964 * sd)
    assert table["lo"].iloc[0] == pytest.approx(lo, abs=1e-4)
    assert table["hi"].iloc[0] == pytest.approx(hi, abs=1e-4)


def test_logrank_matches_hand_computation():
    # group A: 1 (event), 3 (event), 5 (censored); group B: 2 (event), 4 (censored), 6 (event)
    # E_A = 3/6 + 2/5 + 2/4 = 1.4; V = 0.25 + 0.24 + 0.25 = 0.74; chi2 = (2 - 1.4)^2 / 0.74
    res = logrank([1, 3, 5, 2, 4, 6], [1, 1, 0, 1, 0, 1], [True, True, True, False, False, False])
    assert res["chi2"] == pytest.approx(0.36 / 0.74, abs=1e-9)
    assert res["p"] == pytest.approx(sps.chi2.sf(0.36 / 0.74, 1), abs=1e-9)
    # no comparison without two groups or without events
    assert logrank([1, 2], [1, 1], [True, True]) == {"chi2": None, "p": None}
    assert logrank([1, 2], [0, 0], [True, False]) == {"chi2": None, "p": None}


def test_c_index_ordered_reversed_and_tied():
    time = [1, 2, 3, 4, 5, 6]
    event = [1, 1, 0, 1, 1, 0]
    assert c_index(time, event, [10, 8, 6, 4, 2, 0]) == 1.0  # higher count, earlier event: perfect
    assert c_index(time, event, [0, 2, 4, 6, 8, 10]) == 0.0  # perfectly reversed
    assert c_index(time, event, [3] * 6) == 0.5  # all tied
    assert c_index(time, [0] * 6, [1, 2, 3, 4, 5, 6]) is None  # no event: no comparable pair


def test_cohen_kappa_and_agreement():
    rng = np.random.default_rng(3)
    a, b = rng.random(50) < 0.3, rng.random(50) < 0.4
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    ag = agreement([0, 1, 6, 7, 2], [0, 2, 4, 9, 2], cutoff=5)
    assert (ag["both_high"], ag["reference_only"], ag["other_only"], ag["both_low"]) == (1, 1, 0, 3)
    assert ag["ba_bias"] == pytest.approx(0.2)
    assert ag["ba_loa_hi"] - ag["ba_bias"] == pytest.approx(1.96 * np.std([0, 1, -2, 2, 0], ddof=1))


def test_paired_bootstrap_differences():
    clinical, manual, _ = _cohort(80)
    t, e, c = clinical["time_months"], clinical["event"], manual["true_ctc"].to_numpy()
    same = bootstrap_intervals(t, e, {"a": c, "b": c}, cutoff=5, n_boot=200, seed=1)
    assert same["comparisons"]["b"]["c_diff_lo"] == same["comparisons"]["b"]["c_diff_hi"] == 0.0
    flipped = bootstrap_intervals(t, e, {"a": c, "b": -c}, cutoff=5, n_boot=200, seed=1)
    lo, hi = flipped["sources"]["a"]
    assert 0.5 < lo < hi
    assert flipped["comparisons"]["b"]["c_diff_hi"] < 0  # a reversed marker is clearly worse
    assert flipped["valid"] == 200


def test_optimal_cutoff_finds_the_split_and_adjusts_p():
    rng = np.random.default_rng(5)
    count = rng.integers(0, 8, 300)
    time = rng.exponential(np.where(count >= 3, 8.0, 30.0))
    opt = optimal_cutoff(time, np.ones(300, int), count)
    assert opt["cutoff"] == 3.0
    assert opt["p_naive"] < opt["p_adjusted"] < 1e-3


def test_outcome_generator_recovers_its_hazard_ratios():
    m = OutcomeModel()
    rng = np.random.default_rng(1000)
    n = 3000
    count = np.where(rng.random(n) < 0.25, 0, rng.poisson(rng.gamma(2, 1.6, n)))
    clinical = sample_outcomes(pd.DataFrame({"sample_id": [f"S{i}" for i in range(n)], "n_ctc": count}), seed=0)
    design = pd.DataFrame(
        {
            "time": clinical["time_months"],
            "event": clinical["event"],
            "log1p_ctc": np.log1p(count),
            "ctc_high": (count >= m.cutoff).astype(float),
            "age10": (clinical["age"] - 65) / 10,
            "stage4": (clinical["stage"] == 4).astype(float),
        }
    )
    fit = CoxPHFitter().fit(design, "time", "event")
    ci = fit.confidence_intervals_
    truth = {
        "log1p_ctc": m.beta_log_ctc,
        "ctc_high": m.beta_cutoff,
        "age10": m.beta_age_per_10y,
        "stage4": m.beta_stage4,
    }
    for term, beta in truth.items():
        assert ci.loc[term].iloc[0] <= beta <= ci.loc[term].iloc[1], term
    # censoring: administrative after 36-60 months, some losses to follow-up before
    assert 0.6 < clinical["event"].mean() < 0.95
    assert clinical.loc[clinical["event"] == 0, "time_months"].max() <= m.follow_up_months + m.accrual_months
    assert clinical["stage"].isin([3, 4]).all() and clinical["blood_volume_ml"].eq(7.5).all()


def test_outcomes_are_deterministic_and_independent_of_order():
    patients = pd.DataFrame({"sample_id": ["A", "B", "C", "D"], "n_ctc": [0, 2, 6, 1]})
    a = sample_outcomes(patients, seed=4)
    pd.testing.assert_frame_equal(a, sample_outcomes(patients, seed=4))
    assert not a["time_months"].equals(sample_outcomes(patients, seed=5)["time_months"])
    with pytest.raises(CtcidError, match="n_ctc"):
        sample_outcomes(patients.drop(columns="n_ctc"), seed=0)


@pytest.mark.slow
def test_default_effect_is_of_published_size_for_most_seeds():
    """150 patients x 30 cells at 8% CTCs: dichotomised HR CI above 1 and C >= 0.6 for most seeds."""
    hits = 0
    seeds = range(200)
    for s in seeds:
        p = _patient_table(
            SynthConfig(patients=150, cells_per_patient=30, ctc_fraction=0.08, seed=s), PRESETS["medium"]
        )
        cl = sample_outcomes(p, seed=s)
        df = pd.DataFrame({"t": cl["time_months"], "e": cl["event"], "high": (p["n_ctc"] >= 5).astype(float)})
        lo = float(np.exp(CoxPHFitter().fit(df, "t", "e").confidence_intervals_.loc["high"].iloc[0]))
        hits += lo > 1 and c_index(cl["time_months"], cl["event"], p["n_ctc"]) >= 0.6
    assert hits / len(seeds) >= 0.8


# ----------------------------------------------------------------------------------------------- readers


def test_count_readers_follow_the_documented_columns():
    ids = ["A", "B"]
    new = pd.DataFrame({"sample_id": ids, "called_ctc": [1, 2], "ctc_estimate": [1.5, 2.5], "true_ctc": [1, 3]})
    assert read_counts(new).column == "ctc_estimate"
    old = pd.DataFrame({"sample_id": ids, "cells": [9, 9], "predicted_ctc": [1, 2], "expected_ctc": [1.1, 2.0]})
    assert read_counts(old).column == "predicted_ctc"
    manual = pd.DataFrame({"sample_id": ids, "cells": [9, 9], "true_ctc": [0, 7]})
    assert read_counts(manual).column == "true_ctc"
    assert read_counts(new, column="true_ctc").counts.tolist() == [1.0, 3.0]
    with pytest.raises(CtcidError, match="cannot tell which column"):
        read_counts(pd.DataFrame({"sample_id": ids, "a": [1, 2], "b": [3, 4]}))
    with pytest.raises(CtcidError, match="no count column 'nope'"):
        read_counts(new, column="nope")
    # volumes: from the counts file, else from the clinical table, else assumed to be 7.5 mL
    vol = read_counts(pd.DataFrame({"sample_id": ids, "true_ctc": [3, 6], "blood_volume_ml": [15.0, 5.0]}))
    assert vol.counts.tolist() == [1.5, 9.0] and vol.volume == "counts"
    clin = read_clinical(
        pd.DataFrame({"sample_id": ids, "time_months": [1, 2], "event": [1, 0], "blood_volume_ml": [10.0, 15.0]})
    )
    assert read_counts(manual, clinical=clin).counts.tolist() == [0.0, 3.5]
    assert parse_count_columns(["manual=true_ctc"], ["manual", "predicted"]) == {"manual": "true_ctc"}


# ----------------------------------------------------------------------------------------------- analysis


def test_analysis_recovers_a_strong_marker_and_compares_sources():
    clinical, manual, predicted = _cohort(120)
    res = survival_analysis(
        clinical, {"manual": manual, "predicted": predicted}, covariates=["age", "stage"], n_boot=200
    )
    r = res.result
    assert r["patients"] == 120 and r["events"] == int(clinical["event"].sum())
    m = r["sources"]["manual"]
    assert m["c_index_lo"] <= m["c_index"] <= m["c_index_hi"] and m["c_index"] > 0.6
    assert m["hr_dichotomised_lo"] > 1 and m["hr_continuous_lo"] > 1
    assert set(m["cox_dichotomised_terms"]) == {"ctc_high", "age", "stage=IV"}
    assert r["sources"]["predicted"]["column"] == "predicted_ctc"
    comp = r["comparison"]
    assert comp == r["comparisons"]["predicted"] and comp["reference"] == "manual"
    assert comp["c_diff"] == pytest.approx(r["sources"]["predicted"]["c_index"] - m["c_index"])
    assert comp["c_diff_lo"] <= comp["c_diff"] <= comp["c_diff_hi"]
    assert 0.5 < comp["spearman"] <= 1 and -1 <= comp["kappa"] <= 1
    assert sorted(res.images) == ["bland_altman.png", "km_manual.png", "km_predicted.png"]
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in res.images.values())
    json.dumps(r, allow_nan=False)  # strict JSON: no NaN anywhere

    html = survival_section_html(r, res.images)
    assert html.startswith('<section class="survival">') and html.count("data:image/png;base64,") == 3
    assert "<script" not in html and "http" not in html and "predicted against manual" in html


def test_estimates_just_below_the_cutoff_are_rounded_to_whole_cells():
    clinical, manual, _ = _cohort(60)
    # a near-perfect probabilistic estimate: each CTC counted with p = 0.995, so 5 CTCs give 4.975
    estimate = pd.DataFrame({"sample_id": manual["sample_id"], "ctc_estimate": 0.995 * manual["true_ctc"]})
    n_five = int((manual["true_ctc"] == 5).sum())
    assert n_five > 0
    counts = {"manual": manual, "predicted": estimate}
    rounded = survival_analysis(clinical, counts, n_boot=0).result
    assert (
        rounded["comparison"]["kappa"] == 1.0 and rounded["sources"]["predicted"]["changed_by_rounding"] == n_five
    )
    assert rounded["sources"]["predicted"]["n_high"] == rounded["sources"]["manual"]["n_high"]
    raw = survival_analysis(clinical, counts, n_boot=0, round_counts=False).result
    assert raw["comparison"]["reference_only"] == n_five and raw["comparison"]["kappa"] < 1.0
    assert any("change group at the cut-off with rounding" in n for n in raw["notes"])


def test_few_events_refuse_cox_but_draw_km():
    clinical, manual, _ = _cohort(40)
    clinical["event"] = 0
    clinical.loc[:5, "event"] = 1  # 6 events
    res = survival_analysis(clinical, {"manual": manual}, n_boot=0)
    s = res.result["sources"]["manual"]
    assert s["hr_dichotomised"] is None and s["hr_continuous"] is None
    assert any("only 6 event(s): Cox regression is refused" in n for n in res.result["notes"])
    assert s["logrank_p"] is not None and "km_manual.png" in res.images


# ----------------------------------------------------------------------------------------------- command line


def test_cli_end_to_end_on_a_synthetic_cohort(capsys, tmp_path: Path):
    """synth --outcomes changes no other file; survival reads its clinical.csv and two count files."""
    common = ["--patients", 36, "--cells-per-patient", 6, "--size", 32, "--ctc-fraction", 0.4, "--workers", 1]
    assert _cli(capsys, "synth", tmp_path / "with", "--outcomes", *common)[0] == 0
    assert _cli(capsys, "synth", tmp_path / "without", *common)[0] == 0

    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}

    with_, without = digest(tmp_path / "with"), digest(tmp_path / "without")
    assert with_.pop("clinical.csv") and with_ == without
    clinical = pd.read_csv(tmp_path / "with" / "clinical.csv")
    assert list(clinical.columns) == ["sample_id", "time_months", "event", "age", "stage", "blood_volume_ml"]

    labels = pd.read_csv(tmp_path / "with" / "labels.csv")
    truth = (labels["label_true"] == "ctc").groupby(labels["sample_id"]).sum()
    pd.DataFrame({"sample_id": truth.index, "true_ctc": truth.to_numpy()}).to_csv(
        tmp_path / "manual.csv", index=False
    )
    rng = np.random.default_rng(0)
    pred = pd.DataFrame(
        {"sample_id": truth.index, "cells": 6, "called_ctc": truth.to_numpy(), "true_ctc": truth.to_numpy()}
    )
    pred["ctc_estimate"] = np.clip(truth.to_numpy() + rng.normal(0, 0.7, len(pred)), 0, 6).round(3)
    pred.to_csv(tmp_path / "counts.csv", index=False)

    out = tmp_path / "surv"
    args = ["survival", tmp_path / "with" / "clinical.csv", out, "--counts", f"manual={tmp_path / 'manual.csv'}"]
    args += ["--counts", f"predicted={tmp_path / 'counts.csv'}", "--cutoff", 2, "--covariates", "age,stage"]
    code, stdout, err = _cli(capsys, *args, "--n-boot", 100, "--find-cutoff")
    assert code == 0, err
    assert "C-index of predicted" in stdout and "optimistic" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "bland_altman.png",
        "km_manual.png",
        "km_predicted.png",
        "patients.csv",
        "survival.json",
        "survival.md",
    ]
    r = json.loads((out / "survival.json").read_text())
    assert r["patients"] == 36 and list(r["sources"]) == ["manual", "predicted"]
    assert r["sources"]["predicted"]["column"] == "ctc_estimate" and r["sources"]["manual"]["volume"] == "clinical"
    assert r["sources"]["manual"]["optimal_cutoff"]["optimistic"] is True
    for key in ("c_index", "c_index_lo", "c_index_hi", "hr_dichotomised", "logrank_p", "hr_continuous"):
        assert key in r["sources"]["manual"]
    for key in ("c_diff", "c_diff_lo", "c_diff_hi", "spearman", "kappa"):
        assert key in r["comparison"]
    assert "## predicted against manual" in (out / "survival.md").read_text()
    # an existing output is kept without --overwrite
    code, _, err = _cli(capsys, *args)
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, m: c.assign(time_months=c["time_months"].where(c.index != 3, -1.0)), "is negative for 1"),
        (lambda c, m: c.assign(time_months=c["time_months"].where(c.index != 4)), "have no time_months"),
        (lambda c, m: c.assign(event=c["event"].where(c.index != 2, 2)), "event must be 1 (death or"),
        (lambda c, m: pd.concat([c, c.iloc[[0]]]), "duplicate sample id 'P000' in the clinical"),
        (lambda c, m: m.__setitem__("sample_id", m["sample_id"].replace("P001", "P000")), "duplicate sample id"),
        (lambda c, m: m.__setitem__("sample_id", "X" + m["sample_id"].str[1:]), "only 0 patient(s) have"),
        (lambda c, m: m.__setitem__("true_ctc", -m["true_ctc"] - 1), "true_ctc is negative"),
        (lambda c, m: c.drop(columns="event"), "no column 'event'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path: Path, change, message):
    clinical, manual, _ = _cohort(30)
    changed = change(clinical, manual)
    if isinstance(changed, pd.DataFrame):
        clinical = changed
    paths = _write(tmp_path, clinical=clinical, manual=manual)
    out = tmp_path / "out"
    code, _, err = _cli(capsys, "survival", paths["clinical"], out, "--counts", f"manual={paths['manual']}")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ctcid: error") and message in lines[0], err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_partial_match_is_reported_and_too_few_refused(capsys, tmp_path: Path):
    clinical, manual, _ = _cohort(30)
    paths = _write(tmp_path, clinical=clinical, manual=manual.iloc[:20], few=manual.iloc[:9])
    code, _, err = _cli(capsys, "survival", paths["clinical"], tmp_path / "a", "--counts", f"m={paths['manual']}")
    assert code == 0 and "m: 20 of 20 counts matched the clinical table" in err.replace("\n", " ")
    assert json.loads((tmp_path / "a" / "survival.json").read_text())["patients"] == 20
    code, _, err = _cli(capsys, "survival", paths["clinical"], tmp_path / "b", "--counts", f"m={paths['few']}")
    assert code == 2 and "only 9 patient(s)" in err and not (tmp_path / "b").exists()
    code, _, err = _cli(capsys, "survival", paths["clinical"], tmp_path / "c", "--counts", "m")
    assert code == 2 and "--counts expects NAME=VALUE" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cutoff", "0"], "--cutoff must be a positive number"),
        (["--n-boot", "5"], "--n-boot must be 0"),
        (["--covariates", "weight"], "no column 'weight'"),
        (["--count-column", "other=true_ctc"], "not given with --counts"),
        (["--counts", "m=elsewhere.csv"], "--counts gives the name 'm' twice"),
    ],
)
def test_bad_options_exit_2(capsys, tmp_path: Path, args: list[str], message: str):
    clinical, manual, _ = _cohort(20)
    paths = _write(tmp_path, clinical=clinical, manual=manual)
    code, _, err = _cli(
        capsys, "survival", paths["clinical"], tmp_path / "out", "--counts", f"m={paths['manual']}", *args
    )
    assert code == 2 and message in err and not (tmp_path / "out").exists(), err


def test_docstring_examples_run():
    for module in (
        ctcid.survival.analysis,
        ctcid.survival.data,
        ctcid.survival.html,
        ctcid.survival.stats,
        ctcid.synth.outcomes,
        ctcid.survival,
    ):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
