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
