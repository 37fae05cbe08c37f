"""Pooling comparisons run on different cohorts (``ctcid pool``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score

from ctcid.cli import run
from ctcid.errors import CtcidError
from ctcid.workflows import pool_comparisons


def _comparison(
    root: Path, fingerprint: str, seed: int, variants=("bf", "better"), patients: int = 8, flip: float = 0.3
) -> Path:
    """A finished comparison folder as ``ctcid ablate`` leaves it: ``table.csv``, each variant's
    ``oof_predictions.csv`` and a fold's ``run.json``. The reference mislabels about ``flip`` of each patient's
    cells; later variants call every cell right."""
    rng = np.random.default_rng(seed)
    n = 20
    ids = np.repeat([f"P{i:02d}" for i in range(1, patients + 1)], n)
    y = (rng.random(ids.size) < 0.3).astype(int)
    y[::n] = 1  # every patient has a CTC
    rows = []
    for k, name in enumerate(variants):
        wrong = rng.random(ids.size) < (flip if k == 0 else 0.0)
        call = np.where(wrong, 1 - y, y)
        p = np.clip(0.5 * call + 0.25 + rng.normal(0, 0.1, ids.size), 0, 1)
        frame = pd.DataFrame(
            {
                "cell_id": [f"{s}_C{i:04d}" for i, s in enumerate(ids)],
                "sample_id": ids,
                "label": np.where(y == 1, "ctc", "wbc"),
                "p_ctc": p,
                "call": np.where(call == 1, "ctc", "wbc"),
            }
        )
        (root / name / "fold0").mkdir(parents=True)
        frame.to_csv(root / name / "oof_predictions.csv", index=False)
        per = frame.assign(t=y, c=call).groupby("sample_id")[["t", "c"]].sum()
        counts = {"sample_id": per.index, "called_ctc": per["c"], "true_ctc": per["t"]}
        for est in ("expected_ctc", "adjusted_ctc", "ctc_estimate"):  # the columns of a real counts.csv
            counts.update({est: per["c"], f"{est}_lo": per["c"] - 1, f"{est}_hi": per["c"] + 1})
        pd.DataFrame(counts).to_csv(root / name / "counts.csv", index=False)
        (root / name / "fold0" / "run.json").write_text(json.dumps({"dataset_fingerprint": fingerprint}))
        rows.append(
            {"variant": name, "pooled_f1": f1_score(y, call), "f1_diff": 0.1 * k, "reference": variants[0]}
        )
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return root


def _cells(folder: Path, variant: str) -> pd.DataFrame:
    return pd.read_csv(folder / variant / "oof_predictions.csv")


def test_pooled_table_keeps_cohorts_apart_and_pairs_the_differences(tmp_path: Path):
    a = _comparison(tmp_path / "a", "sha256:aaa", seed=1)
    b = _comparison(tmp_path / "b", "sha256:bbb", seed=2)
    table = pool_comparisons([a, b], tmp_path / "pooled", n_boot=300).set_index("variant")

    both = {v: pd.concat([_cells(a, v), _cells(b, v)]) for v in ("bf", "better")}
    f1 = {v: f1_score(f["label"] == "ctc", f["call"] == "ctc") for v, f in both.items()}
    # the two cohorts name their patients alike (P01..P08); pooled, they are 16 patients
    assert (table["patients"] == 16).all()
    assert table.loc["bf", "pooled_f1"] == pytest.approx(f1["bf"])
    assert table.loc["bf", "pooled_pr_auc"] == pytest.approx(
        average_precision_score(both["bf"]["label"] == "ctc", both["bf"]["p_ctc"])
    )
    assert table.loc["better", "f1_diff"] == pytest.approx(f1["better"] - f1["bf"])
    assert table.loc["better", "f1_diff_lo"] > 0 and bool(table.loc["better", "f1_diff_excludes_0"])
    assert table.loc["bf", "f1_diff"] == 0 and table.loc["bf", "reference"] == "bf"
    # counts over all 16 patients: the error-free variant's calls equal the truth, inside every interval
    assert table.loc["better", "count_mae"] == 0 and table.loc["better", "estimate_coverage"] == 1
    counts = pd.concat([pd.read_csv(f / "bf" / "counts.csv") for f in (a, b)])
    miss = (counts["called_ctc"] - counts["true_ctc"]).abs()
    assert table.loc["bf", "count_mae"] == pytest.approx(miss.mean())
    assert table.loc["bf", "estimate_coverage"] == pytest.approx((miss <= 1).mean())
    # each cohort's own difference is repeated from its table
    assert table.loc["better", "c1_f1_diff"] == pytest.approx(0.1)
    assert table.loc["better", "c2_f1_diff"] == pytest.approx(0.1)

    record = json.loads((tmp_path / "pooled" / "pool.json").read_text())
    assert [s["dataset_fingerprint"] for s in record["sources"]] == ["sha256:aaa", "sha256:bbb"]
    md = (tmp_path / "pooled" / "table.md").read_text()
    assert "16 patients" in md and "| better" in md and " *" in md


def test_pooled_intervals_resample_patients_within_cohorts(tmp_path: Path):
    # The reference calls every cell of cohort a right and a third of cohort b's wrong. Resampled within cohorts,
    # every resample keeps 8 patients of each, so its F1 varies less than when a resample can draw mostly a or
    # mostly b; the point estimates are the same either way.
    a = _comparison(tmp_path / "a", "sha256:aaa", seed=1, flip=0.0)
    b = _comparison(tmp_path / "b", "sha256:bbb", seed=2, flip=0.35)
    st = pool_comparisons([a, b], tmp_path / "st", n_boot=600).set_index("variant")
    free = pool_comparisons([a, b], tmp_path / "free", n_boot=600, stratify=False).set_index("variant")
    width = lambda t, c, v="bf": t.loc[v, f"{c}_hi"] - t.loc[v, f"{c}_lo"]  # noqa: E731
    assert width(st, "pooled_f1") < 0.8 * width(free, "pooled_f1")
    assert width(st, "f1_diff", "better") < 0.8 * width(free, "f1_diff", "better")
    assert st.loc["bf", "pooled_f1"] == free.loc["bf", "pooled_f1"]
    assert json.loads((tmp_path / "st" / "pool.json").read_text())["resampling"] == "patients within each cohort"
    assert "within each cohort" in (tmp_path / "st" / "table.md").read_text()
    assert "within each cohort" not in (tmp_path / "free" / "table.md").read_text()


@pytest.mark.slow
def test_within_cohort_intervals_hold_their_coverage_in_simulation():
    # benchmarks/pool_strata_coverage.py: cohorts of 12 and 36 patients, the second model gaining on one only.
    # Resampled within cohorts the paired F1 interval covers near 95%; all together it is wider than needed.
    path = Path(__file__).parents[1] / "benchmarks" / "pool_strata_coverage.py"
    spec = importlib.util.spec_from_file_location("pool_strata_coverage", path)
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    res = sim.coverage(*sim.SCENARIOS["unequal"], reps=150)
    assert 0.90 <= res["strat"]["coverage"] <= 0.99
    assert res["strat"]["mean_width"] < 0.9 * res["free"]["mean_width"]


def test_pooling_refuses_what_would_mislead(tmp_path: Path):
    a = _comparison(tmp_path / "a", "sha256:aaa", seed=1)
    same = _comparison(tmp_path / "same", "sha256:aaa", seed=3)
    other_rows = _comparison(tmp_path / "rows", "sha256:ccc", seed=4, variants=("bf", "bf+aug"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    out = tmp_path / "pooled"
    with pytest.raises(CtcidError, match="same dataset as .*count twice"):
        pool_comparisons([a, same], out)
    with pytest.raises(CtcidError, match="pool comparisons of one table"):
        pool_comparisons([a, other_rows], out)
    with pytest.raises(CtcidError, match="no table.csv"):
        pool_comparisons([a, unfinished], out)
    broken = _comparison(tmp_path / "broken", "sha256:ddd", seed=5)
    (broken / "table.csv").write_text("not,a\ncomparison,table\n")
    with pytest.raises(CtcidError, match="not a comparison table"):
        pool_comparisons([a, broken], out)
    with pytest.raises(CtcidError, match="at least two"):
        pool_comparisons([a], out)
    assert not out.exists() and not list(tmp_path.glob(".pooled*"))


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_pool_command(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    a = _comparison(tmp_path / "a", "sha256:aaa", seed=1)
    b = _comparison(tmp_path / "b", "sha256:bbb", seed=2)
    code, printed, _ = _cli(capsys, "pool", a, b, "--out", tmp_path / "p", "--n-boot", 200)
    assert code == 0
    assert "2 cohorts pooled" in printed and "better" in printed
    assert (tmp_path / "p" / "table.csv").is_file()
    # an existing output is kept unless --overwrite
    code, _, err = _cli(capsys, "pool", a, b, "--out", tmp_path / "p")
    err = err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--overwrite" in err[0]
