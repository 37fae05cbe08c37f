"""``ctcid bench system-a``: does System A's recipe help a bright-field-only model? The ablation and the
architecture comparison on one synthetic cohort, with paired intervals.

One cohort of the chosen preset is rendered (``medium`` by default: the preset calibrated so that a
bright-field-only ResNet lands near System A's F1), then

1. System A's ablation exactly as ``ctcid ablate --system A`` runs it: BF only; BF + each augmentation family;
   all three; all three + DAPI in training, every variant on the same patient-grouped folds and with the same
   number of optimiser steps, each variant's F1 and PR-AUC compared with BF only on the same held-out patients
   (paired patient bootstrap);
2. the architecture comparison (ResNet-34, ResNet-50, EfficientNet-B4, DenseNet-121 by default) on bright field
   with System A's recipe, exactly as ``ctcid cv --models ...`` runs it, at a reduced input size, on the same
   folds, each compared with the first architecture.

Both runs keep their folders under ``work`` (resumable: a second call continues where the first stopped).
The record holds ``{"folds", "bf_only", "full_recipe", "variants": {NAME: {"f1", "pr_auc", "f1_diff",
"f1_diff_lo", "f1_diff_hi", ...}}, "architectures": {...}, "checks", "config", "commands", "machine"}``.

A claim about a preset should not rest on one draw of it: with ``cohort_seeds`` the ablation runs on one cohort
per seed (``work/cohort<SEED>/``, the same training seed and folds seed for each), and the record's
``variants`` are the cohorts pooled as ``ctcid pool`` pools them (every held-out patient of every cohort,
patients resampled within their cohort, paired differences from bright field only), with each cohort's own
table under ``cohorts`` and the targets checked both pooled and on every cohort alone. The architectures then
train on the first cohort.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError

__all__ = [
    "ARCHITECTURES",
    "bench_system_a",
    "default_cohort",
    "default_training",
    "pooled_record",
    "system_a_markdown",
    "variant_record",
]

#: System A's architecture comparison.
ARCHITECTURES = ("resnet34", "resnet50", "efficientnet_b4", "densenet121")
BF_ONLY, FULL_RECIPE = "bf", "bf+aug+dapi"
_KEYS = ("f1_diff", "f1_diff_lo", "f1_diff_hi", "pr_auc_diff", "pr_auc_diff_lo", "pr_auc_diff_hi")


def variant_record(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """One entry per row of a comparison ``table.csv``: pooled F1 (and interval), PR-AUC, ROC-AUC, mean F1 over
    folds, and the paired differences from the table's reference (its first row).

    >>> t = pd.DataFrame({"variant": ["bf"], "pooled_f1": [0.8], "pooled_f1_lo": [0.7], "pooled_f1_hi": [0.9],
    ...     "pooled_pr_auc": [0.85], "pooled_roc_auc": [0.9], "f1_mean": [0.79], "f1_std": [0.05],
    ...     "f1_diff": [0.0], "f1_diff_lo": [0.0], "f1_diff_hi": [0.0], "pr_auc_diff": [0.0],
    ...     "pr_auc_diff_lo": [0.0], "pr_auc_diff_hi": [0.0], "f1_diff_excludes_0": [False], "train_cells": [900]})
    >>> variant_record(t)["bf"]["f1"], variant_record(t)["bf"]["f1_diff_excludes_0"]
    (0.8, False)
    """
    out = {}
    for row in table.to_dict("records"):
        entry: dict[str, Any] = {
            "f1": float(row["pooled_f1"]),
            "f1_lo": float(row["pooled_f1_lo"]),
            "f1_hi": float(row["pooled_f1_hi"]),
            "pr_auc": float(row["pooled_pr_auc"]),
            "roc_auc": float(row["pooled_roc_auc"]),
            "f1_fold_mean": float(row["f1_mean"]),
            "f1_fold_std": float(row["f1_std"]),
            "train_cells": int(row["train_cells"]),
        }
        entry.update({k: float(row[k]) for k in _KEYS})
        entry["f1_diff_excludes_0"] = bool(row["f1_diff_excludes_0"])
        if pd.notna(row.get("best_epoch_median")):  # where training kept its weights (median over folds)
            entry["best_epoch"] = float(row["best_epoch_median"])
            entry["epochs_run"] = float(row["epochs_run_median"])
            loss = row.get("final_train_loss")
            entry["final_train_loss"] = None if pd.isna(loss) else float(loss)
            verdict = row.get("convergence")  # empty in a table.csv read back: NaN, which is truthy
            entry["convergence"] = verdict if isinstance(verdict, str) else ""
        out[str(row["variant"])] = entry
    return out


def pooled_record(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """One entry per row of a pooled ``table.csv`` (``ctcid pool``): pooled F1, PR-AUC and ROC-AUC with their
    intervals over every cohort's held-out patients, the paired differences from the reference, and each
    cohort's own F1 and F1 difference (``cohort_f1``, ``cohort_f1_diff``, in the pool's order).

    >>> t = pd.DataFrame({"variant": ["bf"], "patients": [48], "cells": [5760], "pooled_f1": [0.8],
    ...     "pooled_f1_lo": [0.7], "pooled_f1_hi": [0.9], "pooled_pr_auc": [0.85], "pooled_pr_auc_lo": [0.8],
    ...     "pooled_pr_auc_hi": [0.9], "pooled_roc_auc": [0.9], "f1_diff": [0.0], "f1_diff_lo": [0.0],
    ...     "f1_diff_hi": [0.0], "pr_auc_diff": [0.0], "pr_auc_diff_lo": [0.0], "pr_auc_diff_hi": [0.0],
    ...     "f1_diff_excludes_0": [False], "c1_f1": [0.78], "c1_f1_diff": [0.0], "c2_f1": [0.82],
    ...     "c2_f1_diff": [0.0]})
    >>> pooled_record(t)["bf"]["cohort_f1"], pooled_record(t)["bf"]["patients"]
    ([0.78, 0.82], 48)
    """
    cohorts = sorted(
        int(c[1:-3]) for c in table.columns if c.startswith("c") and c.endswith("_f1") and c[1:-3].isdigit()
    )
    out = {}
    for row in table.to_dict("records"):
        entry: dict[str, Any] = {"patients": int(row["patients"]), "cells": int(row["cells"])}
        for key in ("f1", "pr_auc"):
            entry.update({key + end: float(row[f"pooled_{key}{end}"]) for end in ("", "_lo", "_hi")})
        entry["roc_auc"] = float(row["pooled_roc_auc"])
        entry.update({k: float(row[k]) for k in _KEYS})
        entry["f1_diff_excludes_0"] = bool(row["f1_diff_excludes_0"])
        entry["cohort_f1"] = [float(row[f"c{i}_f1"]) for i in cohorts]
        entry["cohort_f1_diff"] = [float(row[f"c{i}_f1_diff"]) for i in cohorts]
        out[str(row["variant"])] = entry
    return out


def _dataset(work: Path, synth: Any, say: Callable[[str], None]) -> Any:
    from ..io import CellDataset
    from ..synth.dataset import synth_dataset

    path = work / "ds"
    if not path.exists():
        say(f"rendering {synth.patients} patients x {synth.cells_per_patient} cells ({synth.difficulty})")
        synth_dataset(path, synth)
    return CellDataset.open(path)


def _commands(
    synth: Any,
    cfg: Any,
    arch_cfg: Any,
    architectures: tuple[str, ...],
    variants: list[str] | None = None,
    cohort_seeds: list[int] | None = None,
) -> list[str]:
    """The ``ctcid`` command lines that make the same runs by hand (one cohort, or one per seed and the pool),
    after the one ``ctcid bench system-a`` call that makes them all where its options reach the configuration."""
    common = f"--folds {cfg.n_folds} --seed {cfg.seed} --batch-size {cfg.batch_size} --n-boot {cfg.n_boot}"
    only = f" --variants {','.join(variants)}" if variants else ""
    lines = []
    base, plain = default_cohort(), default_training()
    reach = [(getattr(synth, k), getattr(base, k)) for k in ("ctc_fraction", "difficulty", "size")]
    reach += [(getattr(cfg, k), getattr(plain, k)) for k in ("batch_size", "n_boot", "model", "channels")]
    reach.append((cfg.patience, cfg.epochs))
    if not cohort_seeds:  # one cohort: --seed seeds the cohort too
        reach.append((synth.seed, cfg.seed))
    if all(a == b for a, b in reach):
        seeds = f" --cohort-seeds {','.join(map(str, cohort_seeds))}" if cohort_seeds else ""
        lines.append(
            f"# all at once: ctcid bench system-a WORK --patients {synth.patients} --cells-per-patient "
            f"{synth.cells_per_patient} --folds {cfg.n_folds} --epochs {cfg.epochs} --input-size {cfg.input_size} "
            f"--architectures '{','.join(architectures)}' --arch-input-size {arch_cfg.input_size} --arch-epochs "
            f"{arch_cfg.epochs} --seed {cfg.seed}{only}{seeds}; or by hand:"
        )
    for s in cohort_seeds or [synth.seed]:
        tag = str(s) if cohort_seeds else ""
        lines += [
            f"ctcid synth export{tag} --patients {synth.patients} --cells-per-patient {synth.cells_per_patient} "
            f"--ctc-fraction {synth.ctc_fraction} --difficulty {synth.difficulty} --size {synth.size} --seed {s}",
            f"ctcid ingest export{tag} ds{tag}",
            f"ctcid ablate ds{tag} ablate{tag} --system A{only} --model {cfg.model} --input-size {cfg.input_size} "
            f"--epochs {cfg.epochs} --patience {cfg.patience} {common}",
        ]
    if cohort_seeds:
        ablations = " ".join(f"ablate{s}" for s in cohort_seeds)
        lines.append(f"ctcid pool {ablations} --out pooled --n-boot {cfg.n_boot} --seed {cfg.seed}")
    if not architectures:
        return lines
    ds = f"ds{cohort_seeds[0]}" if cohort_seeds else "ds"
    arch = (
        f"ctcid cv {ds} architectures --models {','.join(architectures)} --channels BF --train-extra-channels "
        f"DAPI --augment all --input-size {arch_cfg.input_size} --epochs {arch_cfg.epochs} --patience "
        f"{arch_cfg.patience} {common}"
    )
    return [*lines, arch]


def default_cohort() -> Any:
    """The benchmark's cohort: 12 ``medium`` patients x 120 cells of 64 px, 15% CTCs on average."""
    from ..synth import SynthConfig

    return SynthConfig(patients=12, cells_per_patient=120, ctc_fraction=0.15, difficulty="medium", size=64)


def default_training() -> Any:
    """The ablation's training: ResNet-18 from scratch at 40 px on bright field, 12 epochs' worth of steps for
    every variant (no early stopping), 5 patient-grouped folds."""
    from ..train import TrainConfig

    return TrainConfig(model="resnet18", channels=["BF"], input_size=40, epochs=12, patience=12, batch_size=64)


def _checks(v: dict[str, dict[str, Any]]) -> dict[str, bool]:
    full, bf = v[FULL_RECIPE], v[BF_ONLY]
    return {
        "full_recipe_beats_bf_f1": full["f1_diff"] > 0,
        "full_recipe_beats_bf_pr_auc": full["pr_auc_diff"] > 0,
        "full_recipe_f1_diff_interval_above_0": full["f1_diff_lo"] > 0,
        "bf_f1_within_0.03_of_0.8": abs(bf["f1"] - 0.8) <= 0.03,
    }


def _every_cohort(checks: list[dict[str, bool]]) -> dict[str, bool]:
    """Each target checked on every cohort alone (``..._on_every_cohort``)."""
    return {f"{k}_on_every_cohort": all(c[k] for c in checks) for k in checks[0]}


def _variants(variants: list[str] | None) -> list[str] | None:
    """The ablation's rows to train: the targets compare the full recipe with bright field only, so both must be
    among them (bright field only is then the reference)."""
    if variants is None:
        return None
    missing = [v for v in (BF_ONLY, FULL_RECIPE) if v not in variants]
    if missing:
        raise ConfigError(
            "variants", f"must include {' and '.join(missing)}: the targets compare them", "--variants"
        )
    return list(variants)


def _seeds(cohort_seeds: list[int] | None) -> list[int] | None:
    if cohort_seeds is None:
        return None
    seeds = list(cohort_seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(
            "cohort_seeds",
            f"needs two different seeds at least, got {seeds}; one cohort takes --seed",
            "--cohort-seeds",
        )
    return seeds


def _steps(per_fold: pd.DataFrame) -> list[int]:
    """The distinct optimiser-step budgets of a comparison's folds."""
    return sorted({int(s) for s in per_fold["steps"].dropna()})


def _training_seconds(runs: list[Path]) -> float:
    """Seconds spent training every run under the comparison folders ``runs`` (the sum of their epochs' times in
    ``history.csv``), whether in this call or in an earlier one that this call resumed."""
    return float(sum(pd.read_csv(h)["seconds"].sum() for r in runs for h in sorted(r.glob("*/fold*/history.csv"))))


def bench_system_a(
    work: str | os.PathLike[str],
    *,
    cohort: Any = None,
    training: Any = None,
    architectures: tuple[str, ...] = ARCHITECTURES,
    arch_size: tuple[int, int] = (32, 6),
    variants: list[str] | None = None,
    cohort_seeds: list[int] | None = None,
    jobs: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the ablation and the architecture comparison under ``work``; return the record (see the
    module docstring).

    ``cohort`` is a :class:`~ctcid.synth.SynthConfig` (default :func:`default_cohort`), ``training`` the
    ablation's :class:`~ctcid.train.TrainConfig` (default :func:`default_training`; its ``n_folds``, ``seed``
    and ``n_boot`` hold for both runs); the architectures train with System A's full recipe at ``arch_size``
    = (input px, epochs). ``architectures=()`` skips the comparison. ``variants`` trains only those rows of the
    ablation (bright field only and the full recipe among them). ``cohort_seeds`` (two or more) renders one
    cohort of ``cohort``'s preset per seed and pools them. ``jobs`` runs train at once (one GPU holds several of
    these small models; the results are those of training them in turn)."""
    from ..workflows import ablate, compare_models, pool_comparisons
    from .ingest import machine_info

    synth, cfg = cohort or default_cohort(), (training or default_training()).replace(progress=False)
    only, seeds = _variants(variants), _seeds(cohort_seeds)
    arch_cfg = cfg.replace(
        train_extra_channels=["DAPI"], input_size=arch_size[0], epochs=arch_size[1], patience=arch_size[1]
    )
    say = log or (lambda _m: None)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    homes = [work / f"cohort{s}" for s in seeds] if seeds else [work]
    synths = [synth.replace(seed=s) for s in seeds] if seeds else [synth]
    resumed = any((h / "ablate").exists() for h in homes)
    tables, datasets = [], []
    for home, syn in zip(homes, synths, strict=True):
        if seeds:
            say(f"cohort seed {syn.seed}")
        datasets.append(_dataset(home, syn, say))
        out = home / "ablate"
        tables.append(ablate(datasets[-1], out, cfg, "A", only=only, resume=out.exists(), jobs=jobs, log=say))
    record: dict[str, Any] = {
        "benchmark": "system_a",
        "folds": cfg.n_folds,
        "bf_only": BF_ONLY,
        "full_recipe": FULL_RECIPE,
    }
    steps = _steps(pd.concat([t.per_fold for t in tables]))
    if seeds:
        say(f"pooling {len(seeds)} cohorts")
        pooled = pool_comparisons(
            [h / "ablate" for h in homes], work / "pooled", n_boot=cfg.n_boot, seed=cfg.seed, overwrite=True
        )
        record["variants"] = pooled_record(pooled)
        record["resampling"] = "patients within their cohort"
        record["cohorts"] = {}
        for s, t in zip(seeds, tables, strict=True):
            v = variant_record(t.table)
            record["cohorts"][str(s)] = {
                "variants": v,
                "steps_per_fold": _steps(t.per_fold),
                "checks": _checks(v),
            }
    else:
        record["variants"] = variant_record(tables[0].table)
    record["steps_per_fold"] = steps
    if architectures:
        arch_dir = homes[0] / "architectures"
        arch = compare_models(
            datasets[0], arch_dir, arch_cfg, list(architectures), resume=arch_dir.exists(), jobs=jobs, log=say
        )
        record["architectures"] = variant_record(arch.table)
    record["checks"] = _checks(record["variants"])
    if seeds:
        record["checks"].update(_every_cohort([c["checks"] for c in record["cohorts"].values()]))
    record["config"] = {
        "preset": synth.difficulty,
        "patients": synth.patients,
        "cells_per_patient": synth.cells_per_patient,
        "ctc_fraction": synth.ctc_fraction,
        "size": synth.size,
        "cells": sum(len(d) for d in datasets),
        "cohort_seeds": seeds or [synth.seed],
        "variants": list(record["variants"]),
        "architectures": list(architectures),
        "arch_input_size": arch_size[0],
        "arch_epochs": arch_size[1],
        **{k: getattr(cfg, k) for k in ("model", "input_size", "epochs", "batch_size", "n_boot", "seed")},
    }
    record["commands"] = _commands(synth, cfg, arch_cfg, architectures, only, seeds)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["resumed"] = resumed
    runs = [h / "ablate" for h in homes] + ([homes[0] / "architectures"] if architectures else [])
    record["training_minutes"] = round(_training_seconds(runs) / 60, 1)
    record["machine"] = machine_info()
    return record


def _machine(m: dict[str, Any]) -> str:
    cores = f"{m.get('cores', '?')}-core CPU"
    return f"{m['gpu']}, {cores}" if m.get("gpu") else f"{cores}, no GPU"


def _ci(e: dict[str, Any], key: str, fmt: str = "+.3f") -> str:
    return f"{e[key]:{fmt}} [{e[key + '_lo']:{fmt}}, {e[key + '_hi']:{fmt}}]"


def _row(name: str, e: dict[str, Any], ref: str, kept: bool = False) -> str:
    diff = "—" if name == ref else _ci(e, "f1_diff") + (" *" if e["f1_diff_excludes_0"] else "")
    pr = "—" if name == ref else _ci(e, "pr_auc_diff")
    f1 = f"{e['f1']:.3f} [{e['f1_lo']:.3f}, {e['f1_hi']:.3f}]"
    epochs = f" {e['best_epoch']:g} / {e['epochs_run']:g} |" if kept else ""
    return (
        f"| {name} | {e['roc_auc']:.3f} | {e['pr_auc']:.3f} | {f1} | {e['f1_fold_mean']:.3f} ± "
        f"{e['f1_fold_std']:.3f} | {diff} | {pr} |{epochs}"
    )


def _table(entries: dict[str, dict[str, Any]], ref: str) -> list[str]:
    kept = all("best_epoch" in e for e in entries.values())
    head = [
        f"| variant | ROC-AUC | PR-AUC | F1 [95% CI] | F1 per fold | F1 − {ref} [95% CI] "
        f"| PR-AUC − {ref} [95% CI] |" + (" best epoch / epochs |" if kept else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if kept else ""),
    ]
    rows = [_row(name, e, ref, kept) for name, e in entries.items()]
    notes = [
        f"- `{name}`: {e['convergence']} (kept epoch {e['best_epoch']:g} of {e['epochs_run']:g}, median over folds"
        + (
            f"; training loss {e['final_train_loss']:.3f} at the end"
            if e.get("final_train_loss") is not None
            else ""
        )
        + ")."
        for name, e in entries.items()
        if kept and e.get("convergence")
    ]
    return head + rows + (["", *notes] if notes else [])


def _pooled_table(entries: dict[str, dict[str, Any]], ref: str, seeds: list[str]) -> list[str]:
    """The pooled rows: F1 and PR-AUC with intervals over every cohort's patients, the paired differences, and
    each cohort's own F1 difference beside them (so that a gain carried by one cohort shows)."""
    head = [
        f"| variant | ROC-AUC | PR-AUC [95% CI] | F1 [95% CI] | F1 − {ref} [95% CI] | PR-AUC − {ref} [95% CI] | "
        + " | ".join(f"F1 − {ref}, seed {s}" for s in seeds)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(seeds),
    ]
    rows = []
    for name, e in entries.items():
        first = name == ref
        diff = "—" if first else _ci(e, "f1_diff") + (" *" if e["f1_diff_excludes_0"] else "")
        pr = "—" if first else _ci(e, "pr_auc_diff")
        each = " | ".join("—" if first else f"{d:+.3f}" for d in e["cohort_f1_diff"])
        rows.append(
            f"| {name} | {e['roc_auc']:.3f} | {_ci(e, 'pr_auc', '.3f')} | {_ci(e, 'f1', '.3f')} | {diff} | {pr} | "
            f"{each} |"
        )
    return head + rows


def system_a_markdown(record: dict[str, Any]) -> str:
    """The committed table of :func:`bench_system_a`'s record."""
    cfg, v, checks = record["config"], record["variants"], record["checks"]
    m = record["machine"]
    cohorts = record.get("cohorts")
    took = f"Training took {record.get('training_minutes', 0):.0f} min in all (the runs' times summed)" + (
        "; this call resumed finished runs."
        if record.get("resumed")
        else f"; the benchmark took {record.get('seconds', 0) / 60:.0f} min from start to end."
    )
    training = (
        f"{cfg['model']} from scratch at {cfg['input_size']} px, {cfg['epochs']} epochs' worth of optimiser steps "
        f"for every variant ({', '.join(map(str, record['steps_per_fold']))} steps per fold; DAPI in training "
        "doubles the samples, not the steps), no early stopping; augmentation strengths measured on each fold's "
        "training patients (`augment.json` in every run folder)."
    )
    paired = (
        "differences are paired (each resample draws patients once and scores both rows on them); * marks F1 "
        f"differences whose interval excludes 0. {took}"
    )
    if cohorts:
        title = f"# System A on {len(cohorts)} `{cfg['preset']}` cohorts ({_machine(m)})"
        seeds = ", ".join(cohorts)
        about = (
            f"{len(cohorts)} cohorts of {cfg['patients']} patients x {cfg['cells_per_patient']} cells "
            f"(cohort seeds {seeds}; {cfg['cells']} cells in all, {cfg['ctc_fraction']:.0%} CTCs on average, "
            f"{cfg['size']} px crops); in each, {record['folds']} patient-grouped folds (seed {cfg['seed']}), "
            "the same for every row. Values are pooled out of fold over the held-out patients; F1 intervals "
            f"resample patients ({cfg['n_boot']} resamples), within their cohort where cohorts are pooled; "
            + paired
        )
        tables = [
            f"### All {len(cohorts)} cohorts pooled ({next(iter(v.values()))['patients']} patients)",
            "",
            *_pooled_table(v, record["bf_only"], list(cohorts)),
        ]
        for seed, c in cohorts.items():
            tables += ["", f"### Cohort seed {seed}", "", *_table(c["variants"], record["bf_only"])]
    else:
        title = f"# System A on a `{cfg['preset']}` cohort ({_machine(m)})"
        about = (
            f"{cfg['patients']} patients x {cfg['cells_per_patient']} cells ({cfg['cells']} cells, "
            f"{cfg['ctc_fraction']:.0%} CTCs on average, {cfg['size']} px crops, seed {cfg['seed']}); "
            f"{record['folds']} patient-grouped folds, the same for every row. Values are pooled out of fold over "
            f"all held-out patients; F1 intervals resample patients ({cfg['n_boot']} resamples); {paired}"
        )
        tables = _table(v, record["bf_only"])
    lines = [title, "", about, "", "## Ablation (bright field at test time)", "", training, "", *tables, ""]
    if "architectures" in record:
        arch = record["architectures"]
        lines += [
            "## Architectures (bright field, three augmentation families + DAPI in training)",
            "",
            f"From scratch at {cfg['arch_input_size']} px, {cfg['arch_epochs']} epochs"
            + (f", on cohort seed {next(iter(cohorts))}" if cohorts else "")
            + f"; differences against {next(iter(arch))}.",
            "",
            *_table(arch, next(iter(arch))),
            "",
        ]
    else:
        lines += [
            "## Architectures",
            "",
            "Not run in this record (`--architectures` empty); `ctcid bench system-a WORK` runs them by default.",
            "",
        ]
    lines += ["## Targets", ""]
    lines += [f"- {k}: {'holds' if ok else 'does not hold'}" for k, ok in checks.items()]
    lines += ["", "## Commands", "", "```bash", *record["commands"], "```", ""]
    return "\n".join(lines)
