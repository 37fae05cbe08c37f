"""Patient-grouped cross-validation of several variants (architectures, or System A's ablation) on one split.

Every variant is trained on the same folds; each fold is a complete run folder (see
:mod:`ctcid.workflows.training`). Per-fold test metrics give the mean and spread over folds; the
pooled out-of-fold predictions (each fold's calibrated probabilities and its own calls) give bootstrap
intervals, and ``VARIANT/counts.csv`` holds every held-out patient's counts, each from its own fold's model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError
from ..errors import CtcidError, arg
from ..evaluate import PATIENTS_UNKNOWN, Split
from ..evaluate.metrics import METRICS
from ..io import CellDataset
from ..io._atomic import atomic_write_text, output_errors
from ..train import RUN_FILE, TrainConfig, is_complete
from ..train.config import EXTRA_LOOKS
from ..train.run import run_groups
from .training import check_models, small_study_advice, train_model

__all__ = [
    "CONVERGENCE",
    "SYSTEM_A_DAPI_VARIANTS",
    "SYSTEM_A_VARIANTS",
    "SYSTEM_B_VARIANTS",
    "CVResult",
    "ablate",
    "compare_models",
    "convergence",
    "paired_to_reference",
    "run_variants",
    "system_a_variants",
    "system_b_variants",
    "train_runs",
]

#: Metrics shown in the comparison tables, in order (the rates, not the confusion counts).
TABLE_METRICS = METRICS[: METRICS.index("ece") + 1]
_NO_AUG = {"geometric": False, "illumination": False, "noise": False}
_ALL_AUG = {"geometric": True, "illumination": True, "noise": True}

#: System A's table: bright field only, each augmentation family alone, all three, and DAPI added to training.
SYSTEM_A_VARIANTS: dict[str, dict[str, Any]] = {
    "bf": {"augment": dict(_NO_AUG)},
    "bf+geometric": {"augment": {**_NO_AUG, "geometric": True}},
    "bf+illumination": {"augment": {**_NO_AUG, "illumination": True}},
    "bf+noise": {"augment": {**_NO_AUG, "noise": True}},
    "bf+aug": {"augment": dict(_ALL_AUG)},
    "bf+aug+dapi": {"augment": dict(_ALL_AUG), "train_extra_channels": ["DAPI"]},
}


def _with_dapi(mode: str, look: str) -> dict[str, Any]:
    """The three families plus DAPI in training, as extra samples (``extra``) or in place of every training crop
    (``substitute`` with probability 1), shown in ``look``."""
    change = {"augment": dict(_ALL_AUG), "train_extra_channels": ["DAPI"], "extra_mode": mode, "extra_look": look}
    return {**change, "extra_p": 1.0} if mode == "substitute" else change


#: How DAPI enters System A's training (``ablate --system A-dapi``), all with the three families: as extra samples
#: in its own intensity window or as a stand-in for bright field (``extra_look``); and DAPI alone in training
#: (every crop replaced), tested on bright field: how much of bright field's signal DAPI can teach by itself in
#: either look.
SYSTEM_A_DAPI_VARIANTS: dict[str, dict[str, Any]] = {
    "bf": {"augment": dict(_NO_AUG)},
    "bf+aug": {"augment": dict(_ALL_AUG)},
    **{f"bf+aug+dapi_{look}": _with_dapi("extra", look) for look in EXTRA_LOOKS},
    **{f"dapi_only_{look}": _with_dapi("substitute", look) for look in EXTRA_LOOKS},
}


def system_a_variants(base: TrainConfig, table: dict[str, dict[str, Any]] | None = None) -> dict[str, TrainConfig]:
    """System A's ablation as configs: BF input only, the user's augmentation parameters, families switched
    (``table``: :data:`SYSTEM_A_VARIANTS`, or :data:`SYSTEM_A_DAPI_VARIANTS` for the ways of adding DAPI)."""
    out = {}
    for name, change in (SYSTEM_A_VARIANTS if table is None else table).items():
        out[name] = base.replace(
            channels=["BF"],
            augment=change["augment"],
            train_extra_channels=list(change.get("train_extra_channels", [])),
            extra_mode=change.get("extra_mode", base.extra_mode),
            extra_p=change.get("extra_p", base.extra_p),
            extra_look=change.get("extra_look", base.extra_look),
        )
    return out


#: System B's table: the image branch alone, the feature branch alone (logistic regression, trees and MLP), and
#: both fused.
SYSTEM_B_VARIANTS: dict[str, dict[str, Any]] = {
    "image_cnn": {},
    "features_logreg": {"model": "features_logreg"},
    "features_gbm": {"model": "features_gbm"},
    "features_mlp": {"model": "features_mlp"},
    "dual_concat": {"model": "dual_branch", "fusion": "concat"},
    "dual_gated": {"model": "dual_branch", "fusion": "gated"},
}


def system_b_variants(base: TrainConfig) -> dict[str, TrainConfig]:
    """System B's ablation as configs on the user's channels; the image-only CNN is the dual branch's backbone."""
    out = {}
    for name, change in SYSTEM_B_VARIANTS.items():
        model = change.get("model", base.backbone)
        out[name] = replace(base, model=model, fusion=change.get("fusion", base.fusion), train_extra_channels=[])
    return out


@dataclass
class CVResult:
    out: Path
    per_fold: pd.DataFrame
    table: pd.DataFrame


def _fold_outputs(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A finished fold's test predictions and its per-patient counts (from the fold's own model)."""
    frame = pd.read_csv(
        run_dir / "test_predictions.csv", keep_default_na=False, na_values={"logit": [""], "p_ctc": [""]}
    )
    counts = pd.read_csv(run_dir / "test_counts.csv", dtype={"sample_id": str})
    return frame, counts


def _fmt(mean: float, std: float) -> str:
    return "nan" if mean != mean else f"{mean:.3f} ± {std:.3f}"


def _prepare_out(
    out: Path, ds: CellDataset, variants: dict[str, TrainConfig], base: TrainConfig, resume: bool, overwrite: bool
) -> tuple[list[Split], bool]:
    """The folds (checked before anything is written), then the comparison folder with its records; and whether
    the folder was created here."""
    import yaml

    from ..evaluate import fold_table, patient_folds

    if out.exists() and not resume and not overwrite:
        raise CtcidError(
            f"already exists; pass {arg('resume')} to finish it or {arg('overwrite')} to start again", out
        )
    groups = run_groups(ds, base)
    splits = patient_folds(
        groups, ds.labels(), n_folds=base.n_folds, seed=base.seed, val_fraction=base.val_fraction
    )
    if out.exists() and not resume:
        shutil.rmtree(out)
    created = not out.exists()
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    with _cv_guard(out, created):
        atomic_write_text(out / "folds.csv", fold_table(groups, splits, labels=ds.labels()).to_csv(index=False))
        records = {"train": base.to_dict(), "variants": {k: v.to_dict() for k, v in variants.items()}}
        atomic_write_text(out / "config.yaml", yaml.safe_dump(records, sort_keys=False))
    return splits, created


@contextlib.contextmanager
def _cv_guard(out: Path, created: bool, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Leave no unusable comparison folder: on any error, a folder created by this call is removed unless a run
    in it finished or holds a checkpoint, which stay for ``--resume`` (the error says so)."""
    try:
        with output_errors(out):
            yield
    except BaseException as exc:
        done = [p for p in out.glob(f"*/fold*/{RUN_FILE}") if is_complete(p.parent)]
        started = list(out.glob("*/fold*/checkpoints/last.ckpt"))
        if done or started:
            note = (
                f"{out} keeps {len(done)} finished run(s)"
                + (f" and {len(started)} checkpoint(s)" if started else "")
                + f": continue with {arg('resume')}"
            )
            exc.add_note(note)
            if log:
                log(note)
        elif created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def equal_steps(cfg: TrainConfig, split: Split) -> TrainConfig:
    """``cfg`` with the optimiser-step budget of ``cfg.epochs`` epochs of one sample per training cell, so that a
    variant with more samples per cell (DAPI added in training) trains for as many steps, not more.

    The budget is spent in whole epochs of the variant's own samples (the nearest number, at least one), so that
    every epoch ends with a validation: with two samples per cell, 15 plain epochs' steps are 8 epochs of 2x.

    >>> from ctcid.evaluate import Split
    >>> split = Split(fold=0, train=list(range(100)), val=[], test=[])
    >>> plain = equal_steps(TrainConfig(epochs=15, batch_size=10), split)
    >>> dapi = equal_steps(TrainConfig(epochs=15, batch_size=10, train_extra_channels=["DAPI"]), split)
    >>> (plain.epochs, plain.max_steps), (dapi.epochs, dapi.max_steps)
    ((15, 150), (8, 160))
    """
    per_cell = 1 + len(cfg.train_extra_channels) if cfg.extra_mode == "extra" else 1
    plain = -(-len(split.train) // cfg.batch_size)
    own = -(-len(split.train) * per_cell // cfg.batch_size)
    epochs = max(1, round(cfg.epochs * plain / own))
    return replace(cfg, epochs=epochs, max_steps=epochs * own)


def _run_fold(
    ds: CellDataset,
    split: Split,
    name: str,
    cfg: TrainConfig,
    run_dir: Path,
    n_folds: int,
    resume: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Train (or find complete) one variant on one fold; its per-fold row of the comparison."""
    if is_complete(run_dir):
        say(f"{name} fold {split.fold}: already complete")
    else:
        say(f"{name} fold {split.fold + 1}/{n_folds}: training {cfg.model} on {len(split.train)} cells")
        train_model(ds, split, cfg, run_dir, resume=resume and run_dir.exists(), overwrite=not resume, log=say)
    run = json.loads((run_dir / RUN_FILE).read_text())
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    row = {
        "variant": name,
        "model": cfg.model,
        "fold": split.fold,
        "threshold": run["threshold"],
        "train_cells": len(split.train),
        "steps": cfg.max_steps,
        "epochs_run": run.get("epochs_run"),
        "best_epoch": run.get("best_epoch"),
        **_train_losses(run_dir),
    }
    row.update({k: v["value"] for k, v in metrics["metrics"].items()})
    row.update({f"count_{k}": v for k, v in metrics["counts"].items()})
    return row


def _train_losses(run_dir: Path) -> dict[str, float | None]:
    """The training loss of a network's first and last epoch (``history.csv``); None for models trained without
    epochs (trees, linear models)."""
    path = run_dir / "history.csv"
    history = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if "train_loss" not in history or history["train_loss"].dropna().empty:
        return {"first_train_loss": None, "final_train_loss": None}
    loss = history["train_loss"].dropna()
    return {"first_train_loss": float(loss.iloc[0]), "final_train_loss": float(loss.iloc[-1])}


#: Verdicts of :func:`convergence`, and what each says about the training budget.
CONVERGENCE = {
    "may need more steps": "validation was still improving when training stopped, so more steps may raise it",
    "overfits early": "it fitted the training patients long before the end, so more steps will not raise it "
    "(augmentation or regularisation may)",
    "validation peaks early": "validation peaked early while the training loss stayed high, so more steps are "
    "unlikely to raise it",
}


def convergence(per_fold: pd.DataFrame) -> dict[str, Any]:
    """Where in training each fold's kept epoch lies, summarised for one variant's rows of ``per_fold``.

    A fold's kept (best-on-validation) epoch in the last fifth of its epochs means validation was still improving
    when training stopped (``late``). In the first third (``early``) with the last training loss below a tenth of
    the first epoch's, the network fitted its training patients long before the end (``fitted``). The verdict is
    the case that holds in at least half the folds (see :data:`CONVERGENCE`): ``"may need more steps"``,
    ``"overfits early"``, ``"validation peaks early"`` (early but not fitted), or ``""`` (none; or no epochs to
    judge: tree and linear models). Also returns the median kept epoch and epochs run, and the mean last
    training loss.

    >>> import pandas as pd
    >>> rows = {"best_epoch": [3, 2, 22], "epochs_run": 24, "first_train_loss": 0.9, "final_train_loss": 0.01}
    >>> c = convergence(pd.DataFrame(rows))
    >>> c["best_epoch"], c["early"], c["fitted"], c["late"], c["verdict"]
    (3.0, 2, 2, 1, 'overfits early')
    """
    cols = ("best_epoch", "epochs_run")
    sub = per_fold.dropna(subset=list(cols)) if set(cols) <= set(per_fold) else pd.DataFrame()
    if not sub.empty:
        sub = sub[sub["epochs_run"].astype(float) > 0]
    if sub.empty:
        return {
            "best_epoch": None,
            "epochs_run": None,
            "late": 0,
            "early": 0,
            "fitted": 0,
            "folds": 0,
            "final_train_loss": None,
            "verdict": "",
        }
    where = sub["best_epoch"].astype(float) / sub["epochs_run"].astype(float)
    late, early = where > 0.8, where <= 1 / 3
    first = pd.to_numeric(sub.get("first_train_loss", pd.Series(index=sub.index, dtype=float)), errors="coerce")
    last = pd.to_numeric(sub.get("final_train_loss", pd.Series(index=sub.index, dtype=float)), errors="coerce")
    fitted = early & (last < 0.1 * first)
    half = len(sub) / 2
    verdict = ""
    if late.sum() >= half:
        verdict = "may need more steps"
    elif fitted.sum() >= half:
        verdict = "overfits early"
    elif early.sum() >= half:
        verdict = "validation peaks early"
    return {
        "best_epoch": float(sub["best_epoch"].median()),
        "epochs_run": float(sub["epochs_run"].median()),
        "late": int(late.sum()),
        "early": int(early.sum()),
        "fitted": int(fitted.sum()),
        "folds": len(sub),
        "final_train_loss": round(float(last.mean()), 4) if last.notna().any() else None,
        "verdict": verdict,
    }


def train_runs(
    ds: CellDataset,
    runs: list[tuple[str, Split, TrainConfig, Path]],
    *,
    jobs: int = 1,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> None:
    """Train the runs ``(name, split, config, run folder)`` not complete yet, ``jobs`` at a time, each in a
    process of its own (spawned, so that each holds its own CUDA context); with ``jobs`` 1 nothing is done here
    and the caller trains them in turn. Each process gets an equal share of the CPU's threads. The first run that
    fails stops the others and its error is raised here."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    say = log or (lambda _m: None)
    todo = [r for r in runs if not is_complete(r[3])]
    if jobs <= 1 or len(todo) < 2:
        return
    if any(str(cfg.devices) not in ("1", "auto") or cfg.num_nodes > 1 for _, _, cfg, _ in todo):
        raise ConfigError("jobs", "trains runs side by side on one device; use it without --devices", "--jobs")
    workers = min(jobs, len(todo))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // workers)
    say(f"training {len(todo)} runs, {workers} at a time ({threads} CPU thread(s) each)")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_run_process, initargs=(threads,)) as pool:
        pending = {
            pool.submit(_train_one, str(ds.path), split, replace(cfg, progress=False), str(run_dir), resume): name
            for name, split, cfg, run_dir in todo
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                name = pending.pop(future)
                error = future.exception()
                if error is not None:
                    pool.shutdown(cancel_futures=True)
                    raise error
                message = future.result()
                if message is not None:
                    pool.shutdown(cancel_futures=True)
                    raise CtcidError(message)
                say(f"{name}: a run finished ({len(todo) - len(pending)}/{len(todo)})")


def _run_process(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_one(dataset: str, split: Split, cfg: TrainConfig, run_dir: str, resume: bool) -> str | None:
    """One run in a worker process of :func:`train_runs`; a user error comes back as its message."""
    try:
        again = resume and Path(run_dir).exists()
        train_model(CellDataset.open(dataset), split, cfg, run_dir, resume=again, overwrite=not resume)
    except CtcidError as exc:
        return str(exc)
    return None


def _pool_variant(out: Path, run_dirs: list[Path], base: TrainConfig) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pooled out-of-fold predictions, counts (one row per held-out patient) and metrics of one variant; its row
    of pooled figures and the pooled predictions."""
    from ..evaluate import write_metrics

    parts = [_fold_outputs(d) for d in run_dirs]
    pooled = pd.concat([p[0] for p in parts], ignore_index=True)
    counts = pd.concat([p[1] for p in parts], ignore_index=True).sort_values("sample_id", kind="stable")
    atomic_write_text(out / "oof_predictions.csv", pooled.to_csv(index=False))
    marks = {"patients_unknown": PATIENTS_UNKNOWN} if base.samples_unknown else None
    summary = write_metrics(out, pooled, counts, threshold=None, n_boot=base.n_boot, seed=base.seed, extra=marks)
    f1, ece, auc = summary["metrics"]["f1"], summary["metrics"]["ece"], summary["metrics"]["roc_auc"]
    row = {
        "pooled_f1": f1["value"],
        "pooled_f1_lo": f1["lo"],
        "pooled_f1_hi": f1["hi"],
        "pooled_pr_auc": summary["metrics"]["pr_auc"]["value"],
        "pooled_roc_auc": auc["value"],
        "pooled_roc_auc_lo": auc["lo"],
        "pooled_roc_auc_hi": auc["hi"],
        "pooled_ece": ece["value"],
        "interval": summary["interval"],
        "count_mae": summary["counts"].get("called_mae"),
        "estimate_mae": summary["counts"].get("estimate_mae"),
        "estimate_coverage": summary["counts"].get("estimate_coverage"),
    }
    return row, pooled


def paired_to_reference(
    frames: dict[str, pd.DataFrame],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    strata: Mapping[str, object] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each variant's F1 and PR-AUC difference from the first variant (the reference), on the same held-out
    patients, with a paired patient bootstrap 95% interval, and whether the F1 interval excludes 0; ``frames``
    are the variants' out-of-fold predictions (``label``, ``p_ctc``, ``call``, ``sample_id``); ``strata`` (each
    patient's stratum, by sample id) resamples patients within strata."""
    from ..evaluate import paired_difference

    def side(f: pd.DataFrame) -> tuple[Any, Any, Any, Any]:
        lab = f[f["label"].isin(["ctc", "wbc"])]
        return (lab["label"] == "ctc").astype(int), lab["p_ctc"], lab["call"].to_numpy(), lab["sample_id"]

    names = list(frames)
    ref = side(frames[names[0]])
    out = {}
    for name in names:
        d = paired_difference(side(frames[name]), ref, n_boot=n_boot, seed=seed, strata=strata)
        d.pop("patients")
        d["f1_diff_excludes_0"] = bool(d["f1_diff_lo"] > 0 or d["f1_diff_hi"] < 0)
        d["reference"] = names[0]
        out[name] = d
    return out


def _comparison_table(
    per_fold: pd.DataFrame, pooled: dict[str, dict[str, Any]], variants: dict[str, TrainConfig]
) -> pd.DataFrame:
    """One row per variant: mean and spread over folds of each metric, and the pooled figures."""
    from ..evaluate import summarise_folds

    rows = []
    for name in variants:
        sub = per_fold[per_fold["variant"] == name]
        stats = summarise_folds(sub[list(TABLE_METRICS)].to_dict("records")).set_index("metric")
        row: dict[str, Any] = {
            "variant": name,
            "model": variants[name].model,
            "folds": len(sub),
            "train_cells": round(float(sub["train_cells"].mean())),
        }
        for m in TABLE_METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = float(stats.loc[m, "mean"]), float(stats.loc[m, "std"])
        conv = convergence(sub)
        row.update(
            best_epoch_median=conv["best_epoch"],
            epochs_run_median=conv["epochs_run"],
            best_epoch_late_folds=conv["late"],
            best_epoch_early_folds=conv["early"],
            final_train_loss=conv["final_train_loss"],
            convergence=conv["verdict"],
        )
        row.update(pooled[name])
        rows.append(row)
    return pd.DataFrame(rows)


def _table_markdown(
    table: pd.DataFrame, ds: CellDataset, n_folds: int, base: TrainConfig, title: str, budget: str = ""
) -> str:
    from ..evaluate import to_markdown

    shown = pd.DataFrame(
        {
            "variant": table["variant"],
            "model": table["model"],
            **{
                m: [_fmt(a, b) for a, b in zip(table[f"{m}_mean"], table[f"{m}_std"], strict=True)]
                for m in ("f1", "precision", "recall", "specificity", "mcc", "pr_auc", "accuracy")
            },
            "pooled F1 [95% CI]": [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                for v, lo, hi in zip(table["pooled_f1"], table["pooled_f1_lo"], table["pooled_f1_hi"], strict=True)
            ],
            f"F1 vs {table['reference'].iloc[0]} [95% CI]": [
                "—" if name == ref else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]{' *' if x else ''}"
                for name, ref, d, lo, hi, x in zip(
                    table["variant"],
                    table["reference"],
                    table["f1_diff"],
                    table["f1_diff_lo"],
                    table["f1_diff_hi"],
                    table["f1_diff_excludes_0"],
                    strict=True,
                )
            ],
            "pooled ROC-AUC [95% CI]": [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                for v, lo, hi in zip(
                    table["pooled_roc_auc"], table["pooled_roc_auc_lo"], table["pooled_roc_auc_hi"], strict=True
                )
            ],
            "ECE (pooled)": table["pooled_ece"].round(3),
            "count MAE called / estimate": [
                f"{a:.2f} / {b:.2f}" for a, b in zip(table["count_mae"], table["estimate_mae"], strict=True)
            ],
            "estimate coverage": table["estimate_coverage"].round(2),
            "training cells / fold": table["train_cells"],
            "best epoch / epochs (median)": [
                "—" if pd.isna(b) else f"{b:g} / {e:g}"
                for b, e in zip(table["best_epoch_median"], table["epochs_run_median"], strict=True)
            ],
            "training loss at end": ["—" if pd.isna(v) else f"{v:.3f}" for v in table["final_train_loss"]],
        }
    )
    interval = (
        "the pooled F1 interval resamples patients"
        if (table["interval"] == "patients").all()
        else "too few patients to resample them, so the pooled F1 interval resamples cells within patients and "
        "is optimistic"
    )
    mark = (
        f"**{PATIENTS_UNKNOWN}.** The dataset's cells have no patient ids (`--samples-unknown`): each cell is its "
        "own group, so held-out cells share patients with training cells.\n\n"
        if base.samples_unknown
        else ""
    )
    return (
        f"# {title}\n\n{mark}Dataset `{ds.path}` ({len(ds)} cells, {ds.header['n_samples']} patients, fingerprint "
        f"`{ds.fingerprint[:19]}`); {n_folds} patient-grouped folds, seed {base.seed}; {budget}Values are mean ± "
        f"std over folds on the held-out patients; {interval}. ECE: expected calibration error of the pooled "
        f"out-of-fold probabilities. Counts per held-out patient (`VARIANT/counts.csv`): mean absolute error of "
        "the called count and of the reported estimate (`ctc_estimate`, the estimator in `count_method`), and the "
        "share of patients whose 95% "
        f"interval holds the true count. `F1 vs {table['reference'].iloc[0]}`: the difference of pooled F1 from "
        "the first variant on the same held-out patients, with a paired bootstrap interval (patients resampled "
        "once for both); * marks intervals that exclude 0.\n\n"
        + to_markdown(shown)
        + "\n"
        + _convergence_note(table, base.monitor)
    )


def _convergence_note(table: pd.DataFrame, monitor: str) -> str:
    """A paragraph under the table naming the variants whose kept epochs say the budget did not fit them."""
    lines = []
    for _, r in table.iterrows():
        verdict = r["convergence"]
        if not verdict:
            continue
        loss = "" if pd.isna(r["final_train_loss"]) else f"; training loss {r['final_train_loss']:.3f} at the end"
        where = (
            f"the last fifth of training in {r['best_epoch_late_folds']}"
            if verdict == "may need more steps"
            else f"the first third of training in {r['best_epoch_early_folds']}"
        )
        lines.append(
            f"- `{r['variant']}`: the kept epoch lies in {where} of {r['folds']} folds{loss}: "
            f"{CONVERGENCE[verdict]}."
        )
    if not lines:
        return ""
    return (
        f"\nConvergence (each fold keeps the epoch with the best `{monitor}`; `best epoch / epochs` is the median "
        "over folds):\n\n" + "\n".join(lines) + "\n"
    )


def run_variants(
    ds: CellDataset,
    variants: dict[str, TrainConfig],
    out: str | os.PathLike[str],
    *,
    base: TrainConfig,
    title: str,
    resume: bool = False,
    overwrite: bool = False,
    same_steps: bool = False,
    jobs: int = 1,
    log: Callable[[str], None] | None = None,
) -> CVResult:
    """Train every variant on the same patient-grouped folds and write one comparison table.

    With ``same_steps`` every variant of a fold trains for the same number of optimiser steps
    (:func:`equal_steps`), whatever its samples per cell. ``jobs`` > 1 trains that many runs at once, each in
    its own process (:func:`train_runs`); the results are those of training them one after the other.

    Writes ``folds.csv``, ``config.yaml``, ``VARIANT/foldK/`` run folders, ``per_fold.csv``,
    ``table.csv`` and ``table.md`` (mean ± std over folds; pooled F1 with a bootstrap 95% interval, pooled ECE,
    count errors and interval coverage) and ``comparison.png``; per variant ``oof_predictions.csv``,
    ``counts.csv`` (one row per held-out patient) and the pooled metrics and plots.
    """
    say = log or (lambda _m: None)
    out = Path(out)
    models = list(dict.fromkeys(v.model for v in variants.values()))
    for line in small_study_advice(ds, models, samples_unknown=base.samples_unknown):
        say(line)
    if jobs < 1:
        raise ConfigError("jobs", f"must be at least 1, got {jobs}", "--jobs")
    splits, created = _prepare_out(out, ds, variants, base, resume, overwrite)
    with _cv_guard(out, created, say):
        runs = [
            (name, split, equal_steps(cfg, split) if same_steps else cfg, out / name / f"fold{split.fold}")
            for name, cfg in variants.items()
            for split in splits
        ]
        train_runs(ds, runs, jobs=jobs, resume=resume, log=say)
        return _run_all(ds, variants, out, runs, base, title, resume, say)


def _run_all(
    ds: CellDataset,
    variants: dict[str, TrainConfig],
    out: Path,
    runs: list[tuple[str, Split, TrainConfig, Path]],
    base: TrainConfig,
    title: str,
    resume: bool,
    say: Callable[[str], None],
) -> CVResult:
    """Every run (variant, fold, its options, its folder) trained or found complete, then the pooled figures and
    the comparison table (see :func:`run_variants`)."""
    from ..evaluate import plot_model_comparison

    rows, pooled, frames = [], {}, {}
    n_folds = len(runs) // len(variants)
    for name in variants:
        mine = [r for r in runs if r[0] == name]
        for _, split, fold_cfg, run_dir in mine:
            rows.append(_run_fold(ds, split, name, fold_cfg, run_dir, n_folds, resume, say))
        pooled[name], frames[name] = _pool_variant(out / name, [r[3] for r in mine], base)
    for name, diff in paired_to_reference(frames, n_boot=base.n_boot, seed=base.seed).items():
        pooled[name].update(diff)
    per_fold = pd.DataFrame(rows)
    atomic_write_text(out / "per_fold.csv", per_fold.to_csv(index=False))
    table = _comparison_table(per_fold, pooled, variants)
    atomic_write_text(out / "table.csv", table.to_csv(index=False))
    steps = per_fold["steps"].dropna()
    budget = (
        f"every variant trained for {int(steps.min())}-{int(steps.max())} optimiser steps per fold. "
        if len(steps)
        else ""
    )
    atomic_write_text(out / "table.md", _table_markdown(table, ds, n_folds, base, title, budget))
    plot_model_comparison(
        per_fold.rename(columns={"variant": "model", "model": "architecture"}), out / "comparison.png", metric="f1"
    )
    return CVResult(out, per_fold, table)


def _open(dataset: str | os.PathLike[str] | CellDataset) -> CellDataset:
    return dataset if isinstance(dataset, CellDataset) else CellDataset.open(dataset)


def compare_models(
    dataset: str | os.PathLike[str] | CellDataset,
    out: str | os.PathLike[str],
    cfg: TrainConfig,
    models: list[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    log: Callable[[str], None] | None = None,
) -> CVResult:
    """``ctcid cv``: every model in ``models`` (the other options from ``cfg``) on the same patient-grouped
    folds, in one comparison table; ``jobs`` runs trained at once (:func:`run_variants`)."""
    variants = {m: replace(cfg, model=m) for m in models}
    for v in variants.values():
        v.validate()
    check_models(models)
    return run_variants(
        _open(dataset),
        variants,
        out,
        base=cfg,
        title="Architecture comparison",
        resume=resume,
        overwrite=overwrite,
        jobs=jobs,
        log=log,
    )


def ablate(
    dataset: str | os.PathLike[str] | CellDataset,
    out: str | os.PathLike[str],
    cfg: TrainConfig,
    system: str = "A",
    *,
    channels: list[str] | None = None,
    only: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    log: Callable[[str], None] | None = None,
) -> CVResult:
    """``ctcid ablate``: System A's table (bright field at test time; each augmentation family; all three; DAPI in
    training), the ways DAPI can enter System A's training (``system="A-dapi"``, :data:`SYSTEM_A_DAPI_VARIANTS`)
    or System B's table (image CNN, feature trees, feature MLP, dual branch with concatenation and with gated
    fusion) on ``channels`` (System B's default: every channel of the dataset); ``only`` keeps those variants
    of the table, in its order (the first one kept is the reference of the paired differences); ``jobs`` runs
    trained at once (:func:`run_variants`)."""
    system = system.upper()
    if system not in ("A", "A-DAPI", "B"):
        raise ConfigError("system", f"must be A, A-dapi or B, got {system!r}", "--system")
    ds = _open(dataset)
    if system == "B":
        cfg = replace(cfg, channels=list(channels or ds.channels))
        cfg.validate()
        title = f"System B ablation (channels {', '.join(cfg.channels)})"
        variants = system_b_variants(cfg)
    elif system == "A-DAPI":
        title = "System A: DAPI in training (bright field at test time)"
        variants = system_a_variants(cfg, SYSTEM_A_DAPI_VARIANTS)
    else:
        title, variants = "System A ablation (bright field at test time)", system_a_variants(cfg)
    if only:
        unknown = [v for v in only if v not in variants]
        if unknown:
            raise ConfigError(
                "variants", f"{', '.join(unknown)} not in the table; it has {', '.join(variants)}", "--variants"
            )
        variants = {k: v for k, v in variants.items() if k in only}
    return run_variants(
        ds,
        variants,
        out,
        base=cfg,
        title=title,
        resume=resume,
        overwrite=overwrite,
        same_steps=system.startswith("A"),
        jobs=jobs,
        log=log,
    )
