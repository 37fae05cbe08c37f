"""System A's benchmark record and table, and the equal step budget of the ablation."""

from __future__ import annotations

import pandas as pd
import pytest

from ctcid.bench.system_a import system_a_markdown, variant_record
from ctcid.evaluate import Split
from ctcid.train import TrainConfig
from ctcid.workflows.cv import equal_steps


def _table(names: list[str], f1: list[float], lo: list[float]) -> pd.DataFrame:
    n = len(names)
    return pd.DataFrame(
        {
            "variant": names,
            "pooled_f1": f1,
            "pooled_f1_lo": [v - 0.05 for v in f1],
            "pooled_f1_hi": [v + 0.05 for v in f1],
            "pooled_pr_auc": [v + 0.05 for v in f1],
            "pooled_roc_auc": [0.9] * n,
            "f1_mean": f1,
            "f1_std": [0.02] * n,
            "f1_diff": [v - f1[0] for v in f1],
            "f1_diff_lo": lo,
            "f1_diff_hi": [v - f1[0] + 0.05 for v in f1],
            "pr_auc_diff": [v - f1[0] for v in f1],
            "pr_auc_diff_lo": lo,
            "pr_auc_diff_hi": [v - f1[0] + 0.05 for v in f1],
            "f1_diff_excludes_0": [x > 0 for x in lo],
            "train_cells": [800] * n,
        }
    )


def _record(full_f1: float, full_lo: float) -> dict:
    names = ["bf", "bf+geometric", "bf+illumination", "bf+noise", "bf+aug", "bf+aug+dapi"]
    f1 = [0.79, 0.78, 0.81, 0.77, 0.80, full_f1]
    lo = [0.0, -0.05, -0.01, -0.06, -0.03, full_lo]
    v = variant_record(_table(names, f1, lo))
    return {
        "folds": 5,
        "bf_only": "bf",
        "full_recipe": "bf+aug+dapi",
        "variants": v,
        "architectures": variant_record(_table(["resnet34", "resnet50"], [0.7, 0.75], [0.0, 0.01])),
        "steps_per_fold": [150, 160],
        "checks": {
            "full_recipe_beats_bf_f1": v["bf+aug+dapi"]["f1_diff"] > 0,
            "full_recipe_f1_diff_interval_above_0": v["bf+aug+dapi"]["f1_diff_lo"] > 0,
        },
        "config": {
            "preset": "medium",
            "patients": 12,
            "cells_per_patient": 120,
            "cells": 1440,
            "ctc_fraction": 0.15,
            "size": 64,
            "seed": 0,
            "n_boot": 1000,
            "model": "resnet18",
            "input_size": 40,
            "epochs": 12,
            "arch_input_size": 32,
            "arch_epochs": 6,
        },
        "commands": ["ctcid ablate ds ablate --system A"],
        "seconds": 600.0,
        "machine": {"cores": 2},
    }


def test_record_has_the_issue_layout_and_differences_against_bf():
    rec = _record(0.85, 0.02)
    full = rec["variants"]["bf+aug+dapi"]
    assert set(full) >= {"f1", "pr_auc", "f1_diff", "f1_diff_lo", "f1_diff_hi"}
    assert full["f1_diff"] == pytest.approx(0.06) and full["f1_diff_excludes_0"]
    assert rec["variants"]["bf"]["f1_diff"] == 0.0


@pytest.mark.parametrize(("full_f1", "full_lo", "word"), [(0.85, 0.02, "holds"), (0.75, -0.08, "does not hold")])
def test_markdown_marks_differences_and_says_whether_targets_hold(full_f1, full_lo, word):
    text = system_a_markdown(_record(full_f1, full_lo))
    row = next(line for line in text.splitlines() if line.startswith("| bf+aug+dapi |"))
    assert row.endswith("|") and (" *" in row) == (full_lo > 0)
    assert f"- full_recipe_f1_diff_interval_above_0: {word}" in text
    assert "| bf | 0.900 | 0.840 | 0.790 [0.740, 0.840] |" in text
    assert "F1 − resnet34" in text and "150, 160 steps per fold" in text


def test_equal_steps_gives_dapi_in_training_the_same_budget_in_whole_epochs():
    split = Split(fold=0, train=list(range(1000)), val=[], test=[])
    base = TrainConfig(epochs=12, batch_size=64)
    plain = equal_steps(base, split)
    dapi = equal_steps(base.replace(train_extra_channels=["DAPI"]), split)
    assert plain.max_steps == 12 * 16 and plain.epochs == 12
    assert dapi.epochs == 6 and dapi.max_steps == 6 * 32  # 1,000 cells x 2 samples in 32 batches of 64
    sub = equal_steps(base.replace(train_extra_channels=["DAPI"], extra_mode="substitute"), split)
    assert sub.max_steps == plain.max_steps


def test_markdown_shows_where_training_kept_its_weights():
    t = _table(["bf", "bf+aug"], [0.6, 0.7], [0.0, 0.01])
    t["best_epoch_median"], t["epochs_run_median"] = [3.0, 22.0], [24.0, 24.0]
    t["final_train_loss"], t["convergence"] = [0.004, 0.41], ["overfits early", "may need more steps"]
    rec = _record(0.85, 0.02)
    rec["variants"] = variant_record(t)
    assert rec["variants"]["bf"]["best_epoch"] == 3.0 and rec["variants"]["bf+aug"]["convergence"]
    text = system_a_markdown(rec)
    assert "| best epoch / epochs |" in text
    row = next(line for line in text.splitlines() if line.startswith("| bf |"))
    assert row.endswith("| 3 / 24 |")
    assert (
        "- `bf`: overfits early (kept epoch 3 of 24, median over folds; training loss 0.004 at the end)." in text
    )
    # records written before the column existed keep their old layout
    old = system_a_markdown(_record(0.85, 0.02))
    assert "best epoch" not in old


def test_record_of_a_table_read_back_from_csv_has_no_nan_verdict(tmp_path):
    t = _table(["resnet34", "resnet50"], [0.68, 0.74], [0.0, 0.01])
    t["best_epoch_median"], t["epochs_run_median"] = [3.0, 3.0], [6.0, 6.0]
    t["final_train_loss"], t["convergence"] = [0.52, 0.54], ["", "may need more steps"]
    t.to_csv(tmp_path / "table.csv", index=False)
    rec = variant_record(pd.read_csv(tmp_path / "table.csv"))  # the empty verdict comes back as NaN
    assert rec["resnet34"]["convergence"] == "" and rec["resnet50"]["convergence"] == "may need more steps"
    notes = [
        line
        for line in system_a_markdown({**_record(0.85, 0.02), "architectures": rec}).splitlines()
        if line.startswith("- `resnet")
    ]
    assert notes == [
        "- `resnet50`: may need more steps (kept epoch 3 of 6, median over folds; training loss 0.540 at the end)."
    ]


@pytest.mark.slow
def test_bench_on_two_cohort_seeds_pools_them_and_resumes(tmp_path):
    import json

    from ctcid.bench.system_a import bench_system_a
    from ctcid.synth import SynthConfig

    cohort = SynthConfig(patients=6, cells_per_patient=24, ctc_fraction=0.2, difficulty="easy", size=32)
    training = TrainConfig(
        model="resnet10t", channels=["BF"], input_size=32, epochs=1, patience=1, batch_size=32, n_folds=2,
        n_boot=50, lr=3e-3,
    )  # fmt: skip
    kw = {"cohort": cohort, "training": training, "architectures": ()}
    rec = bench_system_a(tmp_path / "w", variants=["bf", "bf+aug+dapi"], cohort_seeds=[1, 2], **kw)
    assert list(rec["cohorts"]) == ["1", "2"] and not rec["resumed"]
    assert list(rec["variants"]) == ["bf", "bf+aug+dapi"] and rec["config"]["cohort_seeds"] == [1, 2]
    full = rec["variants"]["bf+aug+dapi"]
    assert full["patients"] == 12 and full["cells"] == 2 * 6 * 24
    # the pooled table carries each cohort's own row, and the pooled difference is paired on the same patients
    for i, seed in enumerate(["1", "2"]):
        own = rec["cohorts"][seed]["variants"]["bf+aug+dapi"]
        assert full["cohort_f1"][i] == pytest.approx(own["f1"])
        assert full["cohort_f1_diff"][i] == pytest.approx(own["f1_diff"])
    assert full["f1_diff_lo"] <= full["f1_diff"] <= full["f1_diff_hi"]
    assert rec["variants"]["bf"]["f1_diff"] == 0.0
    every = rec["checks"]["full_recipe_f1_diff_interval_above_0_on_every_cohort"]
    assert every == all(c["variants"]["bf+aug+dapi"]["f1_diff_lo"] > 0 for c in rec["cohorts"].values())
    assert (tmp_path / "w" / "cohort1" / "ablate" / "table.csv").is_file()
    assert json.loads((tmp_path / "w" / "pooled" / "pool.json").read_text())
    assert any(c.startswith("ctcid pool ablate1 ablate2 --out pooled") for c in rec["commands"])
    assert any(
        "--variants bf,bf+aug+dapi" in c and c.startswith("ctcid ablate ds2 ablate2") for c in rec["commands"]
    )

    text = system_a_markdown(rec)
    assert "# System A on 2 `easy` cohorts" in text and "### All 2 cohorts pooled (12 patients)" in text
    assert "### Cohort seed 1" in text and "### Cohort seed 2" in text
    row = next(line for line in text.splitlines() if line.startswith("| bf+aug+dapi |"))
    assert f"| {full['cohort_f1_diff'][0]:+.3f} | {full['cohort_f1_diff'][1]:+.3f} |" in row

    # a second call finds every run finished: nothing trains again, the record is the same
    run = tmp_path / "w" / "cohort2" / "ablate" / "bf" / "fold0" / "run.json"
    before = run.stat().st_mtime_ns
    again = bench_system_a(tmp_path / "w", variants=["bf", "bf+aug+dapi"], cohort_seeds=[1, 2], **kw)
    assert again["resumed"] and run.stat().st_mtime_ns == before
    assert again["variants"] == rec["variants"] and "this call resumed finished runs" in system_a_markdown(again)


def test_bench_refuses_an_ablation_without_the_compared_rows_or_a_single_seed(tmp_path):
    from ctcid.bench.system_a import bench_system_a
    from ctcid.config import ConfigError

    with pytest.raises(ConfigError, match="must include bf\\+aug\\+dapi"):
        bench_system_a(tmp_path / "w", variants=["bf", "bf+aug"], architectures=())
    with pytest.raises(ConfigError, match="must include bf and bf\\+aug\\+dapi"):
        bench_system_a(tmp_path / "w", variants=["bf+aug"], architectures=())
    for seeds in ([3, 3], [3]):
        with pytest.raises(ConfigError, match="two different seeds"):
            bench_system_a(tmp_path / "w", cohort_seeds=seeds, architectures=())
    assert not (tmp_path / "w").exists()  # refused before anything was rendered


def test_cli_names_a_cohort_seed_that_is_not_a_number(tmp_path, capsys):
    from ctcid.cli import run

    with pytest.raises(SystemExit) as info:
        run(["bench", "system-a", str(tmp_path / "w"), "--cohort-seeds", "5,six"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--cohort-seeds" in err and "whole numbers" in err
    assert "Traceback" not in err and not (tmp_path / "w").exists()


def _pool_table(diffs: list[float], lo: float) -> pd.DataFrame:
    """A pooled table (``ctcid pool``) of bf and the full recipe over two cohorts."""
    full = 0.78 + sum(diffs) / 2
    return pd.DataFrame(
        {
            "variant": ["bf", "bf+aug+dapi"],
            "cohorts": [2, 2],
            "patients": [48, 48],
            "cells": [5760, 5760],
            **{f"pooled_{k}": [0.78, full] for k in ("f1", "pr_auc", "roc_auc")},
            **{f"pooled_{k}_lo": [0.7, full - 0.06] for k in ("f1", "pr_auc", "roc_auc")},
            **{f"pooled_{k}_hi": [0.85, full + 0.05] for k in ("f1", "pr_auc", "roc_auc")},
            "f1_diff": [0.0, full - 0.78],
            "f1_diff_lo": [0.0, lo],
            "f1_diff_hi": [0.0, full - 0.7],
            "pr_auc_diff": [0.0, 0.02],
            "pr_auc_diff_lo": [0.0, -0.01],
            "pr_auc_diff_hi": [0.0, 0.05],
            "f1_diff_excludes_0": [False, lo > 0],
            "reference": ["bf", "bf"],
            "c1_f1": [0.76, 0.76 + diffs[0]],
            "c1_f1_diff": [0.0, diffs[0]],
            "c2_f1": [0.8, 0.8 + diffs[1]],
            "c2_f1_diff": [0.0, diffs[1]],
        }
    )


def test_markdown_of_pooled_cohorts_shows_each_cohorts_difference_beside_the_pooled_one():
    from ctcid.bench.system_a import pooled_record

    rec = _record(0.85, 0.02)
    rec["variants"] = pooled_record(_pool_table([0.07, 0.03], 0.025))
    full = rec["variants"]["bf+aug+dapi"]
    assert full["cohort_f1_diff"] == pytest.approx([0.07, 0.03]) and full["f1_diff"] == pytest.approx(0.05)
    assert set(full) >= {"f1", "pr_auc", "f1_diff", "f1_diff_lo", "f1_diff_hi", "patients"}
    own = variant_record(_table(["bf", "bf+aug+dapi"], [0.76, 0.83], [0.0, 0.02]))
    rec["cohorts"] = {"5": {"variants": own}, "6": {"variants": own}}
    rec["resumed"] = True
    text = system_a_markdown(rec)
    assert text.startswith("# System A on 2 `medium` cohorts") and "cohort seeds 5, 6" in text
    row = next(line for line in text.splitlines() if line.startswith("| bf+aug+dapi |"))
    assert row == (
        "| bf+aug+dapi | 0.830 | 0.830 [0.770, 0.880] | 0.830 [0.770, 0.880] | +0.050 [+0.025, +0.130] * "
        "| +0.020 [-0.010, +0.050] | +0.070 | +0.030 |"
    )
    assert "### All 2 cohorts pooled (48 patients)" in text and text.count("### Cohort seed") == 2
    assert "on cohort seed 5; differences against resnet34" in text
    assert "this call resumed finished runs" in text and "from start to end" not in text
    # a pooled difference whose interval reaches 0 carries no mark
    rec["variants"] = pooled_record(_pool_table([0.07, -0.03], -0.01))
    row = next(line for line in system_a_markdown(rec).splitlines() if line.startswith("| bf+aug+dapi |"))
    assert " * " not in row and row.endswith("| +0.070 | -0.030 |")


def test_commands_name_the_one_bench_call_only_where_its_options_reach_the_configuration():
    from ctcid.bench.system_a import _commands, default_cohort, default_training

    synth, cfg = default_cohort().replace(patients=24), default_training().replace(epochs=24, patience=24)
    arch = cfg.replace(input_size=32, epochs=6)
    lines = _commands(synth, cfg, arch, (), ["bf", "bf+aug+dapi"], [5, 6])
    assert lines[0].startswith("# all at once: ctcid bench system-a WORK --patients 24 --cells-per-patient 120")
    assert "--epochs 24 --input-size 40 --architectures ''" in lines[0]
    assert lines[0].endswith("--seed 0 --variants bf,bf+aug+dapi --cohort-seeds 5,6; or by hand:")
    assert lines[1].endswith("--seed 5")
    assert lines[-1] == "ctcid pool ablate5 ablate6 --out pooled --n-boot 1000 --seed 0"
    one = _commands(synth, cfg, arch, ("resnet34",))
    assert "--architectures 'resnet34'" in one[0] and one[-1].startswith("ctcid cv ds architectures")
    # what the bench call cannot set: the commands by hand only
    for other_synth, other_cfg in [
        (synth.replace(difficulty="hard"), cfg),
        (synth, cfg.replace(batch_size=32)),
        (synth, cfg.replace(patience=5)),
        (synth.replace(seed=3), cfg),  # one cohort: --seed seeds both
    ]:
        assert not _commands(other_synth, other_cfg, arch, ())[0].startswith("#")
    assert _commands(synth.replace(seed=3), cfg, arch, (), None, [3, 4])[0].startswith("#")
