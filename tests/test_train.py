from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ctcid.config import ConfigError
from ctcid.data import BatchPlan, StoreBatches, training_samples
from ctcid.errors import CtcidError
from ctcid.evaluate import Split, patient_folds, threshold_half_max_f1, threshold_max_f1, train_val_split
from ctcid.io import CellDataset
from ctcid.models import load_bundle
from ctcid.train import TrainConfig, fit

FAST = TrainConfig(model="resnet10t", epochs=2, batch_size=32, n_boot=50, progress=False, patience=5, lr=3e-3)


def _split(ds: CellDataset) -> Split:
    return train_val_split(ds.table["sample_id"].to_numpy(), ds.labels(), val_fraction=0.25, seed=0)


def test_fit_writes_a_complete_run(small_store: Path, tmp_path: Path):
    ds = CellDataset.open(small_store)
    res = fit(ds, _split(ds), FAST, tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["seed"] == 0 and run["dataset_fingerprint"] == ds.fingerprint
    assert run["epochs_run"] == 2 and "torch" in run["versions"]
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert hist["epoch"].tolist() == [1, 2] and hist["train_loss"].notna().all()
    folds = pd.read_csv(tmp_path / "run" / "folds.csv")
    assert set(folds["role"]) == {"train", "val"} and folds.groupby("sample_id")["role"].nunique().max() == 1
    bundle = load_bundle(res.bundle)
    assert bundle.meta.channels == ["BF"] and bundle.meta.crop_size == [32, 32]
    assert (
        bundle.meta.threshold == pytest.approx(res.threshold)
        and bundle.meta.training.config["model"] == "resnet10t"
    )
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 1000
    val = pd.read_csv(tmp_path / "run" / "val_predictions.csv")
    assert set(val["sample_id"]) == set(bundle.meta.training.val_samples)
    assert ((val["p_ctc"] >= res.threshold) == (val["call"] == "ctc")).all()
    # the default rule: the maximum F1 of the calibrated validation probabilities
    assert res.threshold == pytest.approx(threshold_max_f1(val["label"] == "ctc", val["p_ctc"]), abs=1e-9)


def test_fixed_seed_gives_identical_results(small_store: Path, tmp_path: Path):
    ds = CellDataset.open(small_store)
    cfg = replace(FAST, epochs=1, threshold_rule="half-max-f1")
    fit(ds, _split(ds), cfg, tmp_path / "a")
    res = fit(ds, _split(ds), cfg, tmp_path / "b")
    a = pd.read_csv(tmp_path / "a" / "val_predictions.csv")
    b = pd.read_csv(tmp_path / "b" / "val_predictions.csv")
    np.testing.assert_array_equal(a["logit"].to_numpy(), b["logit"].to_numpy())
    # the option reaches the calibration step: half the best F1 of the calibrated validation probabilities
    assert res.threshold == pytest.approx(threshold_half_max_f1(b["label"] == "ctc", b["p_ctc"]), abs=1e-9)
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["train"]["threshold_rule"] == "half-max-f1"


def test_leaking_split_is_refused(small_store: Path, tmp_path: Path):
    ds = CellDataset.open(small_store)
    split = _split(ds)
    leaky = Split(0, np.union1d(split.train, split.val[:3]), split.val, np.array([], np.int64))
    with pytest.raises(CtcidError, match="appear"):
        fit(ds, leaky, FAST, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_existing_run_folder_needs_resume_or_overwrite(small_store: Path, tmp_path: Path):
    ds = CellDataset.open(small_store)
    cfg = replace(FAST, epochs=1)
    fit(ds, _split(ds), cfg, tmp_path / "run")
    with pytest.raises(CtcidError, match="pass resume=True to continue this run or overwrite=True"):
        fit(ds, _split(ds), cfg, tmp_path / "run")
    with pytest.raises(CtcidError, match="already complete"):
        fit(ds, _split(ds), cfg, tmp_path / "run", resume=True)
    (tmp_path / "run" / "run.json").write_text('{"status": "running"}')
    with pytest.raises(CtcidError, match="changed: lr"):
        fit(ds, _split(ds), replace(cfg, lr=0.5), tmp_path / "run", resume=True)


def test_dapi_in_training_only(small_store: Path, tmp_path: Path):
    ds = CellDataset.open(small_store)
    cells = np.arange(5)
    rows = training_samples(cells, [0], [1], "extra")
    assert rows.tolist() == [[c, 0] for c in cells] + [[c, 1] for c in cells]
    plan = BatchPlan(rows, ds.labels(), 4, shuffle=True, balanced=False, seed=0)
    batch = StoreBatches(ds, plan, [0, 1])[0]
    for k in range(4):
        cell, src = int(batch["index"][k]), int(batch["src"][k, 0])
        np.testing.assert_array_equal(batch["pixels"][k, 0].numpy(), ds.images([cell])[0, src])
    sub = BatchPlan(
        training_samples(np.arange(40), [0], [1], "substitute"),
        ds.labels(),
        40,
        True,
        False,
        0,
        substitute=[1],
        substitute_p=0.5,
    )
    src = StoreBatches(ds, sub, [0, 1])[0]["src"][:, 0].numpy()
    assert 5 < (src == 1).sum() < 35 and set(src) == {0, 1}
    only = replace(sub, substitute_p=1.0)  # DAPI alone in training (ablate --system A-dapi, dapi_only_own)
    assert set(StoreBatches(ds, only, [0, 1])[0]["src"][:, 0].numpy()) == {1}
    cfg = replace(FAST, epochs=1, train_extra_channels=["DAPI"])
    res = fit(ds, _split(ds), cfg, tmp_path / "run")
    meta = load_bundle(res.bundle).meta
    assert meta.channels == ["BF"] and list(meta.normalisation) == ["BF"]  # test time stays bright field only
    assert meta.training.config["train_extra_channels"] == ["DAPI"]


def test_stand_in_extra_channel_looks_like_bright_field(small_store: Path, tmp_path: Path):
    from ctcid.data import Normalizer, channel_normalisation, stand_in_normalisation

    ds = CellDataset.open(small_store)  # bright field: dark discs on a bright background; DAPI: bright discs
    norm = channel_normalisation(ds, ["BF", "DAPI"], flatfield=["BF"])
    own = dict(norm["DAPI"])
    norm["DAPI"], measures = stand_in_normalisation(ds, np.arange(len(ds)), "DAPI", "BF", norm, ["BF"])
    assert norm["DAPI"]["lo"] > norm["DAPI"]["hi"] and norm["DAPI"]["std"] == norm["BF"]["std"]
    assert 0 < measures["target_depth"] < 0.5 and measures["extra_peak"] > 0
    rows = np.arange(len(ds))
    pix = torch.from_numpy(ds.images(rows, ["BF", "DAPI"]).astype(np.int32))
    src = torch.tensor(ds.channel_index(["BF", "DAPI"]))[None].expand(len(rows), 2)
    x = Normalizer(norm, ds.channels).window(pix, src)
    bf, dapi = x[:, 0].flatten(1), x[:, 1].flatten(1)
    assert abs(float(dapi.median()) - float(bf.median())) < 0.02  # both backgrounds at 0.5
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(bf.numpy(), dapi.numpy(), strict=True)]
    assert np.median(corr) > 0.25  # the nucleus dark in both (the noise of each channel is its own)
    # the nucleus as dark as bright field's darkest: the typical crop's 99th percentile lands on 0.5 - depth
    peak = float(torch.quantile(dapi, 0.01, dim=1).median())
    assert peak == pytest.approx(0.5 - measures["target_depth"], abs=0.05)
    # its own window shows the nucleus bright: opposite to bright field
    x_own = Normalizer({**norm, "DAPI": own}, ds.channels).window(pix, src)[:, 1].flatten(1)
    assert np.median([np.corrcoef(a, b)[0, 1] for a, b in zip(bf.numpy(), x_own.numpy(), strict=True)]) < -0.25
    assert stand_in_normalisation(ds, rows, "BF", "DAPI", norm, ["BF"])[0] == norm["BF"]  # no bright-field target
    cfg = replace(FAST, epochs=1, train_extra_channels=["DAPI"], extra_look="stand-in")
    res = fit(ds, _split(ds), cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "extra_channels.json").read_text())["DAPI"]
    assert record["stands_in_for"] == "BF" and record["window"]["lo"] > record["window"]["hi"]
    assert list(load_bundle(res.bundle).meta.normalisation) == ["BF"]


def test_balanced_sampler_draws_classes_equally(small_store: Path):
    ds = CellDataset.open(small_store)
    rows = training_samples(np.arange(len(ds)), [0], [], "extra")
    plan = BatchPlan(rows, ds.labels(), len(rows), shuffle=True, balanced=True, seed=3)
    y = StoreBatches(ds, plan, [0])[0]["y"].numpy()
    assert abs(y.mean() - 0.5) < 0.1 and ds.labels().mean() < 0.3


_KILL_SCRIPT = """
import sys
from dataclasses import replace
from ctcid.evaluate import train_val_split
from ctcid.io import CellDataset
from ctcid.train import TrainConfig, fit
ds = CellDataset.open(sys.argv[1])
split = train_val_split(ds.table["sample_id"].to_numpy(), ds.labels(), val_fraction=0.25, seed=0)
cfg = TrainConfig(model="resnet10t", epochs=3, batch_size=32, n_boot=50, progress=False, patience=5, lr=3e-3)
if sys.argv[3] == "steps":  # a step budget of three whole epochs, as ablations set it
    cfg = replace(cfg, max_steps=3 * -(-len(split.train) // 32))
fit(ds, split, cfg, sys.argv[2], resume=len(sys.argv) > 4)
"""


@pytest.mark.parametrize("budget", ["epochs", "steps"])
def test_killed_run_resumes_to_the_same_result(small_store: Path, tmp_path: Path, budget: str):
    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT)
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, str(script), str(small_store), str(ref), budget], check=True, timeout=600)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(small_store), str(run), budget])
    ckpt = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.exists():  # killed after the first epoch's checkpoint
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert not (run / "model").exists() and ckpt.exists()
    subprocess.run(
        [sys.executable, str(script), str(small_store), str(run), budget, "resume"], check=True, timeout=600
    )
    a = pd.read_csv(ref / "val_predictions.csv")["logit"].to_numpy()
    b = pd.read_csv(run / "val_predictions.csv")["logit"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert json.loads((run / "run.json").read_text())["epochs_run"] == 3
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3] and history["val_pr_auc"].notna().all()


def test_cv_and_ablation_tables(small_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from ctcid.workflows import ablate, run_variants, system_a_variants

    ds = CellDataset.open(small_store)
    base = replace(FAST, epochs=1, n_folds=2)
    variants = system_a_variants(base)
    assert list(variants) == ["bf", "bf+geometric", "bf+illumination", "bf+noise", "bf+aug", "bf+aug+dapi"]
    assert variants["bf"].augment.families() == []
    assert variants["bf+aug+dapi"].train_extra_channels == ["DAPI"]
    picked = {k: variants[k] for k in ("bf", "bf+aug+dapi")}
    with pytest.raises(ConfigError, match="bf\\+dapi not in the table"):
        ablate(ds, tmp_path / "abl", base, "A", only=["bf", "bf+dapi"])
    assert not (tmp_path / "abl").exists()
    res = ablate(ds, tmp_path / "abl", base, "A", only=["bf", "bf+aug+dapi"])
    assert list(res.table["variant"]) == ["bf", "bf+aug+dapi"]
    assert len(res.per_fold) == 4 and set(res.per_fold["fold"]) == {0, 1}
    md = (tmp_path / "abl" / "table.md").read_text()
    assert "| bf+aug+dapi |" in md and "±" in md
    # the reference row is not compared with itself; the other row shows its paired difference
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| bf")}
    assert "| —" in rows["bf"] and "+0.000 [+0.000, +0.000]" not in rows["bf"]
    d = res.table.set_index("variant").loc["bf+aug+dapi"]
    assert f"{d['f1_diff']:+.3f} [{d['f1_diff_lo']:+.3f}, {d['f1_diff_hi']:+.3f}]" in rows["bf+aug+dapi"]
    # each fold's kept epoch and last training loss come from its run folder and reach the table
    for _, r in res.per_fold.iterrows():
        run = json.loads((tmp_path / "abl" / r["variant"] / f"fold{r['fold']}" / "run.json").read_text())
        history = pd.read_csv(tmp_path / "abl" / r["variant"] / f"fold{r['fold']}" / "history.csv")
        assert r["best_epoch"] == run["best_epoch"] and r["epochs_run"] == run["epochs_run"] == 1
        assert r["final_train_loss"] == pytest.approx(history["train_loss"].iloc[-1])
    assert (res.table["best_epoch_median"] == 1).all() and (res.table["epochs_run_median"] == 1).all()
    assert "best epoch / epochs (median)" in md and " 1 / 1 " in md
    # one epoch kept at the last epoch in every fold: the note says the budget was too short
    assert (res.table["convergence"] == "may need more steps").all()
    assert "- `bf`: the kept epoch lies in the last fifth of training in 2 of 2 folds" in md
    from ctcid.cli import _ui

    capsys.readouterr()
    _ui.comparison(res.table, tmp_path / "abl")
    shown = capsys.readouterr().out
    assert "best epoch / epochs (median)" in shown and "bf+aug+dapi: may need more steps (see table.md)" in shown
    folds = pd.read_csv(tmp_path / "abl" / "folds.csv")
    test_sets = folds[folds["role"] == "test"].groupby("fold")["sample_id"].apply(set)
    assert not (test_sets[0] & test_sets[1])
    splits = patient_folds(ds.table["sample_id"].to_numpy(), ds.labels(), n_folds=2, seed=0, val_fraction=0.2)
    for name in picked:  # both variants were tested on exactly the same held-out patients
        for s in splits:
            pred = pd.read_csv(tmp_path / "abl" / name / f"fold{s.fold}" / "test_predictions.csv")
            assert set(pred["cell_id"]) == set(ds.table["cell_id"].iloc[s.test])
    # DAPI added in training leaves the augmentation's strengths as measured on bright field alone
    families = ("geometric", "illumination", "noise")
    strengths = [
        {
            k: v
            for k, v in json.loads((tmp_path / "abl" / n / "fold0" / "augment.json").read_text())[
                "augment"
            ].items()
            if k not in families
        }
        for n in picked
    ]
    assert strengths[0] == strengths[1]
    dapi_record = json.loads((tmp_path / "abl" / "bf+aug+dapi" / "fold0" / "augment.json").read_text())
    assert dapi_record["measured_on"]["channels"] == ["BF"]
    # the same runs trained two at a time, each in a process of its own, give the same predictions
    again = ablate(ds, tmp_path / "abl2", base, "A", only=["bf", "bf+aug+dapi"], jobs=2)
    assert again.per_fold["fold"].tolist() == res.per_fold["fold"].tolist()
    for name in picked:
        a = pd.read_csv(tmp_path / "abl" / name / "oof_predictions.csv")
        b = pd.read_csv(tmp_path / "abl2" / name / "oof_predictions.csv")
        assert a["cell_id"].tolist() == b["cell_id"].tolist()
        np.testing.assert_allclose(a["logit"], b["logit"], rtol=0, atol=1e-4)
    with pytest.raises(ConfigError, match="jobs"):
        run_variants(ds, picked, tmp_path / "abl3", base=base, title="t", jobs=0)
    assert not (tmp_path / "abl3").exists()


def test_convergence_names_a_budget_too_short_or_too_long():
    from ctcid.workflows.cv import convergence

    def rows(best, run=24, last=0.4, first=0.9):
        return pd.DataFrame(
            {"best_epoch": best, "epochs_run": run, "first_train_loss": first, "final_train_loss": last}
        )

    late = convergence(rows([24, 22, 19, 10]))
    assert (late["late"], late["early"], late["verdict"]) == (2, 0, "may need more steps")
    fitted = convergence(rows([2, 3, 8, 20], last=0.01))
    assert (fitted["early"], fitted["fitted"], fitted["verdict"]) == (3, 3, "overfits early")
    assert fitted["best_epoch"] == 5.5 and fitted["epochs_run"] == 24 and fitted["final_train_loss"] == 0.01
    # kept early while the training loss stayed high: not overfitting, validation peaked
    peaked = convergence(rows([2, 3, 8, 20], last=0.5))
    assert (peaked["early"], peaked["fitted"], peaked["verdict"]) == (3, 0, "validation peaks early")
    assert convergence(rows([10, 12, 14]))["verdict"] == ""  # kept mid-way: the budget fits
    assert convergence(rows([24, 2, 12, 12], last=0.01))["verdict"] == ""  # one fold each way is no verdict
    # models without epochs (trees, linear): nothing to judge
    none = convergence(pd.DataFrame({"best_epoch": [None, None], "epochs_run": [None, None]}))
    assert none["verdict"] == "" and none["folds"] == 0 and none["best_epoch"] is None
    assert convergence(pd.DataFrame({"f1": [0.5]}))["folds"] == 0


def test_system_a_dapi_table_varies_only_how_dapi_enters():
    from ctcid.workflows import system_a_variants
    from ctcid.workflows.cv import SYSTEM_A_DAPI_VARIANTS, equal_steps

    base = replace(FAST, extra_look="stand-in", extra_mode="substitute", extra_p=0.3)
    v = system_a_variants(base, SYSTEM_A_DAPI_VARIANTS)
    assert list(v) == [
        "bf",
        "bf+aug",
        "bf+aug+dapi_own",
        "bf+aug+dapi_stand-in",
        "dapi_only_own",
        "dapi_only_stand-in",
    ]
    for cfg in v.values():
        cfg.validate()
        families = [] if cfg is v["bf"] else ["geometric", "illumination", "noise"]
        assert cfg.channels == ["BF"] and cfg.augment.families() == families
    # each row is what its name says whatever the user's extra options
    assert (v["bf+aug+dapi_own"].extra_mode, v["bf+aug+dapi_own"].extra_look) == ("extra", "own")
    assert (v["bf+aug+dapi_stand-in"].extra_mode, v["bf+aug+dapi_stand-in"].extra_look) == ("extra", "stand-in")
    assert (v["dapi_only_own"].extra_mode, v["dapi_only_own"].extra_p, v["dapi_only_own"].extra_look) == (
        "substitute",
        1.0,
        "own",
    )
    assert v["dapi_only_stand-in"].extra_look == "stand-in" and v["bf"].train_extra_channels == []
    # every variant of a fold gets the same optimiser steps, within one epoch's rounding
    split = Split(fold=0, train=list(range(100)), val=[], test=[])
    steps = {k: equal_steps(c.replace(epochs=10, batch_size=10), split).max_steps for k, c in v.items()}
    assert steps["bf"] == steps["bf+aug"] == steps["dapi_only_own"] == 100 and steps["bf+aug+dapi_own"] == 100


def test_flatfield_and_window_normalisation(small_store: Path):
    import torch

    from ctcid.data import Normalizer, channel_normalisation

    ds = CellDataset.open(small_store)
    norm = channel_normalisation(ds, ["BF", "CK"], flatfield=["BF"])
    assert norm["BF"]["mode"] == "flatfield" and norm["CK"]["mode"] == "window"
    st = ds.header["channel_stats"]["CK"]
    assert norm["CK"]["lo"] == st["p0.1"] and norm["CK"]["hi"] == st["p99.9"]
    px = torch.full((2, 2, 16, 16), 1000, dtype=torch.uint16)
    px[0, 0, 6:10, 6:10] = 500  # a dark cell on a background of 1000
    px[1, 0] *= 3  # three times brighter illumination: same flat-field image
    px[1, 0, 6:10, 6:10] = 1500
    src = torch.tensor([[0, 2], [0, 2]])  # dataset channels BF and CK
    x = Normalizer(norm, ds.channels).window(px, src)
    assert x[0, 0, 0, 0] == pytest.approx(0.5) and x[0, 0, 7, 7] == pytest.approx(0.25)
    torch.testing.assert_close(x[0, 0], x[1, 0])
    lo, hi = norm["CK"]["lo"], norm["CK"]["hi"]
    assert x[0, 1, 0, 0] == pytest.approx((1000 - lo) / (hi - lo))


_DDP_SCRIPT = """
import json, sys
from ctcid.evaluate import train_val_split
from ctcid.io import CellDataset
from ctcid.train import TrainConfig, fit
ds = CellDataset.open(sys.argv[1])
split = train_val_split(ds.table["sample_id"].to_numpy(), ds.labels(), val_fraction=0.25, seed=0)
devices = int(sys.argv[3])
cfg = TrainConfig(model="resnet10t", epochs=3, batch_size=16, n_boot=20, progress=False, patience=5, lr=3e-3,
                  device="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto")
res = fit(ds, split, cfg, sys.argv[2])
"""


def _run_ddp_script(script: Path, store: Path, out: Path, devices: str) -> None:
    """Run the training script in ``devices`` processes; a port taken between Lightning's choice of a free port and
    its bind (a race with whatever else runs on the machine) is retried once on a fresh folder and port."""
    import os
    import shutil

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        done = subprocess.run(
            [sys.executable, str(script), str(store), str(out), devices],
            timeout=600,
            env=env,
            cwd=script.parent,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return
        port_race = any(s in done.stderr for s in ("EADDRINUSE", "address already in use", "DistNetworkError"))
        if not port_race or attempt:
            break
        shutil.rmtree(out, ignore_errors=True)
    failed = f"training in {devices} process(es) failed (exit {done.returncode})"
    raise AssertionError(f"{failed}:\n{done.stderr[-4000:]}")


def test_two_process_ddp_on_cpu_matches_one_process(small_store: Path, tmp_path: Path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    for name, devices in (("one", "1"), ("two", "2")):
        _run_ddp_script(script, small_store, tmp_path / name, devices)
    one = json.loads((tmp_path / "one" / "run.json").read_text())
    two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert two["status"] == "complete" and two["epochs_run"] == 3
    # two processes see half the batches each per epoch: the same cells overall, not the same steps
    history = pd.read_csv(tmp_path / "two" / "history.csv")
    assert len(history) == 3
    for key in ("pr_auc", "f1"):
        assert abs(one["validation"][key] - two["validation"][key]) <= 0.1, key
    preds = pd.read_csv(tmp_path / "two" / "val_predictions.csv")
    assert preds["cell_id"].is_unique  # every validation cell predicted exactly once
    ds = CellDataset.open(small_store)
    split = train_val_split(ds.table["sample_id"].to_numpy(), ds.labels(), val_fraction=0.25, seed=0)
    assert set(preds["cell_id"]) == set(ds.table["cell_id"].iloc[split.val])


@pytest.mark.parametrize(
    ("max_epochs", "max_steps", "current", "shown"),
    [(-1, 696, 23, "Epoch 24/24"), (30, -1, 0, "Epoch 1/30"), (-1, -1, 4, "Epoch 5")],
)
def test_progress_counts_epochs_of_a_step_budget(max_epochs, max_steps, current, shown):
    """Lightning's bar shows 'Epoch 23/-2' when a step budget sets max_epochs=-1; ours counts the epochs the
    budget fills (29 batches an epoch here), from 1."""
    from types import SimpleNamespace

    from ctcid.train.callbacks import EpochProgress

    bar = EpochProgress(leave=False)
    bar._trainer = SimpleNamespace(max_epochs=max_epochs, max_steps=max_steps, num_training_batches=29)
    assert bar._get_train_description(current).strip() == shown


def test_history_of_an_epoch_cut_short_by_the_step_budget(small_store: Path, tmp_path: Path):
    """A step budget that ends inside an epoch: that epoch trains but is not validated, so its row must not
    repeat the previous epoch's validation metrics."""
    ds = CellDataset.open(small_store)
    split = _split(ds)
    per_epoch = -(-len(split.train) // FAST.batch_size)
    fit(ds, split, replace(FAST, epochs=30, max_steps=per_epoch + 1), tmp_path / "run")
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert hist["epoch"].tolist() == [1, 2] and hist["train_loss"].notna().all()
    assert hist["val_pr_auc"].notna().tolist() == [True, False]
