"""Calibration and count estimators: known shifts recovered, hand-made values, interval coverage by simulation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from ctcid.config import ConfigError
from ctcid.errors import CtcidError
from ctcid.evaluate import (
    DEFAULT_COUNT_METHOD,
    MIN_CTC_PATIENTS,
    Calibration,
    ErrorRates,
    adjusted_count,
    classification_metrics,
    count_interval,
    count_table,
    coverage_summary,
    decision_threshold,
    default_count_method,
    expected_calibration_error,
    fit_calibration,
    per_patient_confusion,
    uncertainty,
)

# ------------------------------------------------------------------------------------------------ calibration


def _cells(n: int, seed: int, mean: float = -2.0, sd: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(mean, sd, n)
    return z, (rng.random(n) < expit(z)).astype(int)


def test_weighted_loss_shift_is_removed_and_true_probabilities_recovered():
    z, y = _cells(40_000, 0)
    raw = z + np.log(9.0)  # the logit of a network trained with positive weight 9
    grid = np.linspace(-6, 4, 41)
    cal = fit_calibration(raw, y, prior_shift=np.log(9.0))
    assert np.abs(cal.probabilities(grid + np.log(9.0)) - expit(grid)).max() < 0.02
    # a temperature (no intercept) cannot undo the shift: probabilities are far too high
    assert np.abs(Calibration.from_temperature(1.0).probabilities(grid + np.log(9.0)) - expit(grid)).max() > 0.3
    # Platt's intercept finds the shift even when training did not say what it was
    blind = fit_calibration(raw, y, prior_shift=0.0)
    assert blind.intercept == pytest.approx(-np.log(9.0), abs=0.1)
    assert np.abs(blind.probabilities(grid + np.log(9.0)) - expit(grid)).max() < 0.02


def test_overconfident_logits_are_scaled_down():
    z, y = _cells(40_000, 1)
    cal = fit_calibration(3.0 * z, y)  # an over-confident network: logits three times too large
    assert cal.slope == pytest.approx(1 / 3, rel=0.05)
    assert expected_calibration_error(y, cal.probabilities(3.0 * z)) < 0.01
    assert expected_calibration_error(y, expit(3.0 * z)) > 0.05


def test_laplace_covariance_matches_the_spread_of_refits():
    slopes, intercepts, se_slope, se_int = [], [], [], []
    for seed in range(150):
        z, y = _cells(400, 100 + seed)
        cal = fit_calibration(z, y)
        cov = cal.covariance()
        slopes.append(cal.slope)
        intercepts.append(cal.intercept)
        se_slope.append(np.sqrt(cov[0, 0]))
        se_int.append(np.sqrt(cov[1, 1]))
    assert np.std(slopes) == pytest.approx(np.mean(se_slope), rel=0.25)
    assert np.std(intercepts) == pytest.approx(np.mean(se_int), rel=0.25)


def test_separated_and_compressed_validation_sets_give_a_finite_map_on_the_logits_scale():
    # five CTCs among 60 cells, perfectly separated: an unpenalised fit would run the slope to infinity
    raw = np.r_[np.full(5, 3.0), np.full(55, -3.0)]
    y = np.r_[np.ones(5), np.zeros(55)].astype(int)
    cal = fit_calibration(raw, y)
    assert 0.5 < cal.slope < 4.0 and np.isfinite(cal.covariance()).all()
    # an undertrained network: the classes are ranked but every logit lies within a tenth of a unit
    z, y = _cells(2000, 4)
    cal = fit_calibration(0.02 * z, y)
    assert cal.slope == pytest.approx(50, rel=0.1)
    one_class = fit_calibration(raw, np.zeros(60, int), prior_shift=1.5)
    assert (one_class.slope, one_class.intercept, one_class.prior_shift) == (1.0, 0.0, 1.5)


def test_isotonic_is_monotone_and_calibrated():
    z, y = _cells(20_000, 2)
    cal = fit_calibration(2.0 * z + 1.0, y, method="isotonic")
    grid = np.linspace(-10, 10, 101)
    p = cal.probabilities(grid)
    assert cal.method == "isotonic" and (np.diff(p) >= 0).all()
    assert expected_calibration_error(y, cal.probabilities(2.0 * z + 1.0)) < 0.01
    assert not cal.covariance().any()


def test_calibration_round_trips_and_refuses_unknown_fields():
    cal = fit_calibration(*_cells(2000, 3), prior_shift=0.7)
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal
    with pytest.raises(CtcidError, match="unknown calibration field"):
        Calibration.from_dict({"method": "platt", "slpoe": 1.0})
    with pytest.raises(CtcidError, match="calibration method"):
        Calibration(method="beta")


def test_ece_hand_made():
    # bins: [0.1] x2 with 1 CTC -> |0.5 - 0.1|; [0.9] x2 with 2 CTCs -> |1 - 0.9|; mean weighted by 2/4 each
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.25)
    assert expected_calibration_error([1], [1.0]) == 0.0  # p = 1 falls in the last bin


def test_uncertainty_peaks_at_the_threshold_not_at_one_half():
    cal_logit = np.log(0.99 / 0.01)
    u = uncertainty([cal_logit, 0.0, cal_logit + 4], threshold=0.99)
    assert u[0] == pytest.approx(1.0) and u[1] < 0.05 and u[2] < 0.05


# ------------------------------------------------------------------------------------------------ estimators


def test_count_table_hand_made():
    frame = pd.DataFrame(
        {
            "sample_id": ["B"] * 3 + ["A"] * 2,
            "logit": [0.0, 0.0, 0.0, 10.0, -10.0],
            "call": ["ctc", "wbc", "wbc", "ctc", "wbc"],
            "label": ["ctc", "wbc", "wbc", "ctc", "wbc"],
        }
    )
    rates = ErrorRates(tp=99, fn=1, fp=0, tn=100, patients=8, ctc_patients=6)  # tpr 0.99, fpr 0
    t = count_table(frame, Calibration(), rates, blood_volume_ml=15.0).set_index("sample_id")
    assert t.index.tolist() == ["A", "B"]
    assert t["cells"].tolist() == [2, 3] and t["called_ctc"].tolist() == [1, 1]
    assert t.loc["B", "expected_ctc"] == pytest.approx(1.5)
    assert t.loc["A", "expected_ctc"] == pytest.approx(expit(10) + expit(-10))
    assert t.loc["B", "adjusted_ctc"] == 1.0  # 1 / 0.99 to the nearest cell
    assert t["true_ctc"].tolist() == [1, 1]
    assert (t["ctc_estimate"] == t[f"{DEFAULT_COUNT_METHOD}_ctc"]).all()
    assert (t["count_method"] == DEFAULT_COUNT_METHOD).all()
    assert t["ctc_per_7_5ml"].tolist() == pytest.approx((t["ctc_estimate"] / 2).tolist())
    for m in ("expected", "adjusted"):
        lo, hi = t[f"{m}_ctc_lo"], t[f"{m}_ctc_hi"]
        assert (lo == np.round(lo)).all() and (hi == np.round(hi)).all()
        assert (lo >= 0).all() and (hi <= t["cells"]).all() and (lo <= t[f"{m}_ctc"]).all()
    adj = count_table(frame, Calibration(), rates, method="adjusted")
    assert (adj["ctc_estimate"] == adj["adjusted_ctc"]).all()
    with pytest.raises(ConfigError, match="^method must be one of") as err:  # the library names its argument
        count_table(frame, Calibration(), rates, method="called")
    assert err.value.for_cli().startswith("--count-method must be one of")  # the command line names its flag


def test_adjusted_count_is_nan_for_a_classifier_without_skill():
    est, lo, hi = adjusted_count(np.array([5.0]), np.array([50.0]), ErrorRates(tp=5, fn=5, fp=50, tn=50))
    assert np.isnan(est).all() and np.isnan(lo).all() and np.isnan(hi).all()


def test_count_interval_matches_exact_poisson_binomial_quantiles():
    rng = np.random.default_rng(0)
    for trial in range(30):
        p = rng.beta(0.3, 3.0, rng.integers(20, 300))
        pmf = np.array([1.0])
        for q in p:  # exact distribution of the count by convolution
            pmf = np.convolve(pmf, [1 - q, q])
        cdf = np.cumsum(pmf)
        exact = (int(np.argmax(cdf >= 0.025)), int(np.argmax(cdf >= 0.975)))
        w = p * (1 - p)
        lo, hi = count_interval(
            np.array([p.sum()]), np.array([w.sum()]), np.array([(w * (1 - 2 * p)).sum()]), np.array([p.size])
        )
        assert abs(lo[0] - exact[0]) <= 1 and abs(hi[0] - exact[1]) <= 1, trial


def _simulated_patients(seed: int, prevalence: float | None, patients: int = 300) -> pd.DataFrame:
    """A shifted, over-confident model calibrated on one validation set (prevalence 12%), then held-out patients
    counted. ``prevalence=None`` draws each patient's prevalence in 0-30% (a quarter have none): a label shift,
    under which a calibrated probability no longer matches the patient's own odds."""
    rng = np.random.default_rng(seed)
    shift = np.log(6.0)

    def cells(n: int, prev: float) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < prev).astype(int)
        z = np.where(y == 1, rng.normal(2.0, 1.6, n), rng.normal(-3.5, 1.6, n))  # class-conditional scores
        return 2.0 * z + shift, y  # over-confident and shifted raw logits

    raw_val, y_val = cells(300, 0.12)
    cal = fit_calibration(raw_val, y_val, prior_shift=shift)
    p_val = cal.probabilities(raw_val)
    threshold = decision_threshold(y_val, p_val)  # the rule training uses
    rates = ErrorRates.from_metrics({"validation": classification_metrics(y_val, p_val, threshold)})
    frames = []
    for i in range(patients):
        prev = 0.12 if prevalence is not None else (rng.uniform(0.0, 0.3) if i % 4 else 0.0)
        raw, y = cells(int(rng.integers(50, 250)), prev)
        frames.append(
            pd.DataFrame(
                {
                    "sample_id": f"S{i:04d}",
                    "logit": raw,
                    "call": np.where(cal.probabilities(raw) >= threshold, "ctc", "wbc"),
                    "label": np.where(y == 1, "ctc", "wbc"),
                }
            )
        )
    return count_table(pd.concat(frames, ignore_index=True), cal, rates)


def test_expected_count_intervals_hold_when_patients_share_the_validation_prevalence():
    s = coverage_summary(pd.concat([_simulated_patients(seed, 0.12, 150) for seed in range(8)]))
    assert 0.90 <= s["expected_coverage"] <= 0.98, s
    assert s["expected_mae"] < s["called_mae"]  # summing probabilities beats classify-and-count


def test_under_prevalence_shift_the_adjusted_count_is_the_one_to_trust():
    # Quantification under label shift (Forman 2008): the sum of probabilities calibrated at the validation
    # prevalence is pulled towards it (too high for CTC-free patients), the adjusted count is not.
    s = coverage_summary(pd.concat([_simulated_patients(seed, None, 150) for seed in range(8)]))
    assert s["adjusted_mae"] < s["expected_mae"]
    assert 0.90 <= s["adjusted_coverage"] <= 0.99, s
    assert s["expected_coverage"] < s["adjusted_coverage"]


def test_adjusted_count_intervals_hold_for_known_error_rates():
    rng = np.random.default_rng(7)
    tpr, fpr = 0.85, 0.03
    hits, errs, called_errs = [], [], []
    for _ in range(40):  # 40 validation sets of 40 CTCs and 400 leukocytes ...
        tp, fp = rng.binomial(40, tpr), rng.binomial(400, fpr)
        rates = ErrorRates(tp=tp, fn=40 - tp, fp=fp, tn=400 - fp)
        n = rng.integers(50, 300, 100)  # ... each counting 100 held-out patients
        k = rng.binomial(n, np.where(rng.random(100) < 0.25, 0.0, rng.uniform(0, 0.3, 100)))
        called = rng.binomial(k, tpr) + rng.binomial(n - k, fpr)
        est, lo, hi = adjusted_count(called.astype(float), n.astype(float), rates)
        hits.append((lo <= k) & (k <= hi))
        errs.append(np.abs(est - k))
        called_errs.append(np.abs(called - k))
    coverage = np.concatenate(hits).mean()
    assert 0.90 <= coverage <= 0.98, coverage
    assert np.concatenate(errs).mean() < np.concatenate(called_errs).mean()


def test_adjusted_count_intervals_hold_when_calls_are_nearly_exact():
    # Nearly exact calls leave a spread of well under a cell: whole-number quantiles must then be allowed to
    # miss, or the 95% interval covers almost every patient (rounded outward, 0.996 here).
    rng = np.random.default_rng(3)
    tpr, fpr = 0.99, 0.003
    hits = []
    for _ in range(100):  # validation sets of 10 patients x 40 cells, each counting 64 held-out patients
        k_val = rng.binomial(40, rng.uniform(0, 0.25, 10))
        tp, fp = rng.binomial(k_val, tpr), rng.binomial(40 - k_val, fpr)
        rates = ErrorRates(tp=tp.sum(), fn=(k_val - tp).sum(), fp=fp.sum(), tn=(40 - k_val - fp).sum())
        k = rng.binomial(40, np.where(rng.random(64) < 0.25, 0.0, rng.uniform(0, 0.3, 64)))
        called = rng.binomial(k, tpr) + rng.binomial(40 - k, fpr)
        est, lo, hi = adjusted_count(called.astype(float), np.full(64, 40.0), rates)
        assert ((lo <= est) & (est <= hi)).all()
        hits.append((lo <= k) & (k <= hi))
    coverage = np.concatenate(hits).mean()
    assert 0.90 <= coverage <= 0.98, coverage


def test_coverage_summary_counts_hits_and_widths():
    t = pd.DataFrame(
        {
            "true_ctc": [3, 0, 5],
            "called_ctc": [4, 1, 5],
            "expected_ctc": [3.5, 0.2, 3.0],
            "expected_ctc_lo": [1, 0, 1],
            "expected_ctc_hi": [6, 1, 4],
            "adjusted_ctc": [3.0, 0.0, 5.2],
            "adjusted_ctc_lo": [1, 0, 3],
            "adjusted_ctc_hi": [5, 1, 8],
        }
    )
    s = coverage_summary(t)
    assert s["expected_coverage"] == pytest.approx(2 / 3) and s["adjusted_coverage"] == 1.0
    assert s["expected_width"] == pytest.approx((5 + 1 + 3) / 3)
    assert s["called_mae"] == pytest.approx(2 / 3) and s["called_bias"] == pytest.approx(2 / 3)
    assert s["expected_mae"] == pytest.approx((0.5 + 0.2 + 2.0) / 3)
    assert "estimate_mae" not in s
    # the reported estimate, whichever estimator each row (each fold's model) chose
    t = t.assign(count_method=["expected", "adjusted", "adjusted"])
    for suffix in ("", "_lo", "_hi"):
        t[f"ctc_estimate{suffix}"] = [t[f"{m}_ctc{suffix}"][i] for i, m in enumerate(t["count_method"])]
    s = coverage_summary(t)
    assert s["estimate_mae"] == pytest.approx((0.5 + 0.0 + 0.2) / 3) and s["estimate_coverage"] == 1.0


def test_between_patient_variance_of_rates():
    from ctcid.evaluate import between_patient_variance

    rng = np.random.default_rng(0)
    m = np.full(40, 200)
    alike = rng.binomial(m, 0.3)
    assert between_patient_variance(alike, m) < 0.001
    differ = rng.binomial(m, rng.uniform(0.1, 0.5, 40))  # rates spread with variance 0.4^2 / 12
    assert between_patient_variance(differ, m) == pytest.approx(0.4**2 / 12, rel=0.5)
    assert between_patient_variance(np.array([1, 2]), np.array([5, 5])) == 0.0  # too few patients to tell


def test_heterogeneous_validation_patients_widen_the_adjusted_interval():
    same = ErrorRates(tp=90, fn=10, fp=10, tn=990)
    spread = ErrorRates(tp=90, fn=10, fp=10, tn=990, tpr_between=0.02, fpr_between=0.0001)
    _, lo1, hi1 = adjusted_count(np.array([30.0]), np.array([300.0]), same)
    _, lo2, hi2 = adjusted_count(np.array([30.0]), np.array([300.0]), spread)
    assert hi2[0] - lo2[0] > hi1[0] - lo1[0]


def test_paired_difference_cancels_shared_patient_variation():
    from ctcid.evaluate import paired_difference

    rng = np.random.default_rng(1)
    ids = np.repeat([f"P{i}" for i in range(30)], 40)
    y = (rng.random(ids.size) < np.repeat(rng.uniform(0.0, 0.3, 30), 40)).astype(int)
    score = y * 2.0 + rng.normal(0, 1.0, ids.size)
    better = score + y * 0.6  # the same cells, a bit more separable
    a = (y, 1 / (1 + np.exp(-better)), better > 1.0, ids)
    b = (y, 1 / (1 + np.exp(-score)), score > 1.0, ids)
    d = paired_difference(a, b, n_boot=400)
    assert d["pr_auc_diff"] > 0 and d["pr_auc_diff_lo"] > 0  # paired: the gain is clear
    same = paired_difference(b, b, n_boot=100)
    assert same["f1_diff"] == same["f1_diff_lo"] == same["f1_diff_hi"] == 0.0
    with pytest.raises(CtcidError, match="same patients"):
        paired_difference(a, (y[:40], b[1][:40], b[2][:40], ids[:40]), n_boot=10)


def test_default_estimator_falls_back_when_the_bundle_has_no_error_rates():
    frame = pd.DataFrame({"sample_id": ["A", "A", "B"], "logit": [2.0, -2.0, 0.5], "call": ["ctc", "wbc", "ctc"]})
    t = count_table(frame, Calibration(), None)
    assert (t["count_method"] == "expected").all() and (t["ctc_estimate"] == t["expected_ctc"]).all()
    assert t["adjusted_ctc"].isna().all()
    with pytest.raises(CtcidError, match="error rates"):
        count_table(frame, Calibration(), None, method="adjusted")
    # rates from one or two validation patients with a CTC (or not recorded) are too few for the adjusted count
    for few in (
        ErrorRates(tp=9, fn=1, fp=1, tn=89),
        ErrorRates(tp=9, fn=1, fp=1, tn=89, patients=2, ctc_patients=1),
    ):
        assert (count_table(frame, Calibration(), few)["count_method"] == "expected").all()
    many = ErrorRates(tp=45, fn=5, fp=3, tn=297, patients=10, ctc_patients=MIN_CTC_PATIENTS)
    assert DEFAULT_COUNT_METHOD == "adjusted"
    with_rates = count_table(frame, Calibration(), many)
    assert (with_rates["count_method"] == "adjusted").all()
    assert (with_rates["ctc_estimate"] == with_rates["adjusted_ctc"]).all()


def test_error_rates_record_their_validation_patients():
    per = {"sample_id": ["P1", "P2", "P3"], "tp": [4, 0, 6], "fn": [1, 0, 0], "fp": [0, 2, 1], "tn": [40, 50, 45]}
    rates = ErrorRates.from_metrics(
        {"validation": {"tp": 10, "fn": 1, "fp": 3, "tn": 135}, "validation_patients": per}
    )
    assert (rates.patients, rates.ctc_patients) == (3, 2)
    assert default_count_method(rates) == "expected"
    assert default_count_method(replace(rates, ctc_patients=MIN_CTC_PATIENTS)) == "adjusted"


def test_adjusted_count_is_whole_cells_around_the_unrounded_correction():
    rates = ErrorRates(tp=90, fn=10, fp=5, tn=95)  # tpr 0.9, fpr 0.05
    called, n = np.array([12.0, 14.0, 0.0]), np.array([100.0, 100.0, 100.0])
    est, lo, hi = adjusted_count(called, n, rates)
    exact = (called - 0.05 * n) / 0.85  # 8.24, 10.59, clipped to 0
    np.testing.assert_array_equal(est, [8.0, 11.0, 0.0])
    assert (lo <= np.clip(exact, 0, None)).all() and (np.clip(exact, 0, None) <= hi).all()
    assert (lo <= est).all() and (est <= hi).all()


def test_error_rates_come_from_the_per_patient_counts_when_recorded():
    ids = np.array(["A", "A", "B", "B", "B"])
    y = np.array([1, 0, 1, 0, 0])
    calls = np.array([True, False, False, True, False])
    per = per_patient_confusion(ids, y, calls)
    assert per == {"sample_id": ["A", "B"], "tp": [1, 0], "fn": [0, 1], "fp": [0, 1], "tn": [1, 1]}
    rates = ErrorRates.from_metrics(
        {"validation": {"tp": 9, "fn": 9, "fp": 9, "tn": 9}, "validation_patients": per}
    )
    assert (rates.tp, rates.fn, rates.fp, rates.tn) == (1.0, 1.0, 1.0, 2.0) and rates.patients == 2
    assert ErrorRates.from_metrics({"validation": {"tp": 9, "fn": 1, "fp": 0, "tn": 5}}).tpr == 0.9
    with pytest.raises(CtcidError, match="no validation confusion counts"):
        ErrorRates.from_metrics({})


def test_bench_counts_pools_the_patients_of_every_seed():
    from ctcid.bench import bench_counts

    r = bench_counts(
        presets=("easy",),
        patients=8,
        cells_per_patient=8,
        folds=2,
        epochs=1,
        input_size=32,
        batch_size=32,
        seeds=(0, 1),
        threshold_rule="half-max-f1",
    )
    assert r["config"]["seeds"] == [0, 1] and set(r["by_seed"]) == {"0", "1"}
    assert r["config"]["threshold_rule"] == "half-max-f1"
    # eight patients from each seed's cohort, counted out of fold
    assert r["estimators"]["called"]["presets"]["easy"]["patients"] == 16
    for name in ("expected", "adjusted"):
        pooled = r["estimators"][name]["presets"]["easy"]
        per_seed = [r["by_seed"][s]["easy"][name] for s in ("0", "1")]
        # pooled over the patients each seed could count (the adjusted count is NaN where a one-epoch model's
        # validation calls do not separate the classes)
        w = np.array([p["patients"] for p in per_seed], dtype=float)
        assert pooled["patients"] == w.sum() <= 16
        assert pooled["coverage"] == pytest.approx(np.average([p["coverage"] for p in per_seed], weights=w))
        assert pooled["mae"] == pytest.approx(np.average([p["mae"] for p in per_seed], weights=w))
    assert 0.0 <= r["ece"]["easy"] <= 1.0 and r["default"] in (None, "expected", "adjusted")
