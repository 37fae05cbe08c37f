"""Console output shared by the commands: notes and progress on stderr, results on stdout."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def note(message: str) -> None:
    """A one-line note on stderr (markup-free, so paths with brackets print as they are)."""
    err.print(message, markup=False)


@contextlib.contextmanager
def progress(description: str) -> Iterator[Callable[..., None]]:
    """Progress bars on stderr, shown from the first update on; yields the library's progress callback
    ``update(done, total, stage=None)`` (absolute counts, :class:`ctcid._runtime.Progress`): one bar per stage,
    labelled ``description`` or the stage's name."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    tasks: dict[str | None, int] = {}

    def update(done: int, total: int | None = None, stage: str | None = None) -> None:
        if stage not in tasks:
            if not tasks:
                bar.start()
            tasks[stage] = bar.add_task(stage or description, total=total)
        task = tasks[stage]
        bar.update(task, completed=done, total=total if total is not None else bar.tasks[task].total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def table(df, title: str | None = None) -> None:
    """Print a DataFrame as a rich table on stdout."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in df.columns:
        t.add_column(str(col), justify="right" if df[col].dtype.kind in "iuf" else "left")
    for row in df.itertuples(index=False):
        t.add_row(
            *[
                ""
                if v is None or (isinstance(v, float) and v != v)
                else f"{v:g}"
                if isinstance(v, float)
                else str(v)
                for v in row
            ]
        )
    out.print(t)


def bench_result(result: dict, path: Path | None) -> None:
    """Print a benchmark result and, with ``--out``, write it as JSON to ``path`` (atomically)."""
    from ..io import atomic_write_text

    text = json.dumps(result, indent=2)
    out.print(text)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
        out.print(f"wrote {path}")


# ------------------------------------------------------------------------------------------ result displays


def describe(desc) -> None:
    """A dataset's description (``ctcid info``)."""
    for line in desc.lines():
        out.print(line)
    table(desc.samples, title="cells per sample and class")
    if len(desc.qc):
        table(desc.qc, title="QC flags")


def _metric_line(m: dict) -> str:
    keys = ("f1", "precision", "recall", "specificity", "pr_auc", "roc_auc")
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m and m[k] == m[k])


def fit_summary(res) -> None:
    """A training run's validation metrics, calibration and bundle (``ctcid train``)."""
    if res.calibration is None:  # a data-parallel worker process
        return
    cal = res.calibration
    out.print(f"validation: {_metric_line(res.val_metrics)}")
    out.print(
        f"calls at p >= {res.threshold:.3f}; calibration {cal.method} (slope {cal.slope:.2f}, intercept "
        f"{cal.intercept:.2f} after a class-weight shift of {cal.prior_shift:.2f}); best epoch {res.best_epoch}"
    )
    out.print(f"model bundle: {res.bundle}")


def comparison(frame, path: Path) -> None:
    """A cross-validation table: one column per variant, one row per metric (``cv``, ``ablate``, ``demo``)."""
    import pandas as pd

    rows = {"folds": frame["folds"].astype(str).tolist()}
    for m in ("f1", "precision", "recall", "specificity", "mcc", "pr_auc", "accuracy"):
        rows[f"{m} (mean ± sd)"] = [
            f"{a:.3f} ± {b:.3f}" for a, b in zip(frame[f"{m}_mean"], frame[f"{m}_std"], strict=True)
        ]
    rows["pooled F1 [95% CI]"] = [
        f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
        for v, lo, hi in zip(frame["pooled_f1"], frame["pooled_f1_lo"], frame["pooled_f1_hi"], strict=True)
    ]
    if "pooled_roc_auc" in frame:
        rows["pooled ROC-AUC [95% CI]"] = [
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
            for v, lo, hi in zip(
                frame["pooled_roc_auc"], frame["pooled_roc_auc_lo"], frame["pooled_roc_auc_hi"], strict=True
            )
        ]
    rows["ECE (pooled)"] = [f"{v:.3f}" for v in frame["pooled_ece"]]
    rows["count MAE called / estimate"] = [
        f"{a:.2f} / {b:.2f}" for a, b in zip(frame["count_mae"], frame["estimate_mae"], strict=True)
    ]
    rows["count 95% interval coverage"] = [f"{v:.0%}" for v in frame["estimate_coverage"]]
    rows["training cells / fold"] = [str(v) for v in frame["train_cells"]]
    if "best_epoch_median" in frame:
        rows["best epoch / epochs (median)"] = [
            "—" if pd.isna(b) else f"{b:g} / {e:g}"
            for b, e in zip(frame["best_epoch_median"], frame["epochs_run_median"], strict=True)
        ]
    shown = pd.DataFrame(rows, index=frame["variant"]).T.reset_index(names="metric")
    table(shown, title="held-out patients, patient-grouped folds")
    for name, verdict in zip(frame["variant"], frame.get("convergence", [""] * len(frame)), strict=True):
        if isinstance(verdict, str) and verdict:
            out.print(f"{name}: {verdict} (see table.md)")
    out.print(f"table: {path / 'table.md'} (and table.csv, per_fold.csv, comparison.png)")


def pooled(frame, path: Path) -> None:
    """A pooled comparison (``pool``): one row per variant, with its paired difference from the reference."""
    import pandas as pd

    ref = frame["reference"].iloc[0]

    def ci(col: str, sign: str = "") -> list[str]:
        return [
            f"{v:{sign}.3f} [{lo:{sign}.3f}, {hi:{sign}.3f}]"
            for v, lo, hi in zip(frame[col], frame[f"{col}_lo"], frame[f"{col}_hi"], strict=True)
        ]

    is_ref = (frame["variant"] == ref).tolist()
    shown = pd.DataFrame(
        {
            "variant": frame["variant"],
            "patients": frame["patients"],
            "F1 [95% CI]": ci("pooled_f1"),
            "PR-AUC": [f"{v:.3f}" for v in frame["pooled_pr_auc"]],
            f"F1 - {ref} [95% CI]": ["" if r else d for r, d in zip(is_ref, ci("f1_diff", "+"), strict=True)],
            f"PR-AUC - {ref} [95% CI]": [
                "" if r else d for r, d in zip(is_ref, ci("pr_auc_diff", "+"), strict=True)
            ],
        }
    )
    table(shown, title=f"{int(frame['cohorts'].iloc[0])} cohorts pooled, held-out patients")
    out.print(f"table: {path / 'table.md'} (and table.csv, pool.json)")


def counts(frame, title: str) -> None:
    """A count table: the chosen estimate with its 95% interval, the called count, the truth when known."""
    import pandas as pd

    method = "/".join(sorted(set(frame["count_method"].astype(str))))
    shown = pd.DataFrame({"sample": frame["sample_id"], "cells": frame["cells"]})
    shown[f"CTCs ({method})"] = frame["ctc_estimate"].round(1)
    shown["95% interval"] = [
        f"{lo:.0f}-{hi:.0f}" for lo, hi in zip(frame["ctc_estimate_lo"], frame["ctc_estimate_hi"], strict=True)
    ]
    shown["called"] = frame["called_ctc"]
    if "true_ctc" in frame:
        shown["true"] = frame["true_ctc"]
    table(shown, title=title)


def evaluation(res, dataset: Path) -> None:
    """The metrics, interval note and count errors of ``ctcid evaluate``."""
    import pandas as pd

    shown = ("f1", "precision", "recall", "specificity", "mcc", "roc_auc", "pr_auc", "ece")
    rows = [
        {"metric": k, "value": v["value"], "lo": v["lo"], "hi": v["hi"]}
        for k, v in res.summary["metrics"].items()
        if k in shown
    ]
    table(pd.DataFrame(rows).round(3), title=f"{res.model_id} on {dataset} (95% CI)")
    note(res.summary["interval_note"])
    c = res.summary["counts"]
    method = str(res.counts["count_method"].iloc[0])
    out.print(
        f"count MAE per patient: called {c.get('called_mae', float('nan')):.2f}, {method} "
        f"{c.get(f'{method}_mae', float('nan')):.2f} (95% interval holds the true count for "
        f"{c.get(f'{method}_coverage', float('nan')):.0%} of patients); results in {res.out}"
    )


def demo(res) -> None:
    """What the demo found, and where it put it."""
    describe(res.description)
    comparison(res.cv.table, res.out / "cv")
    counts(res.predictions.counts, "CTCs per new patient")
    o = res.out
    out.print(
        f"\nresults in {o}/: export/ (raw images), dataset/ (cell dataset), summary.csv, montage.png, "
        "cv/ (folds, per-fold runs with model bundles, table.md, plots), new-patients/ and predict/ "
        "(predictions.csv, counts.csv)"
    )
    out.print(f"report: {res.report}")
    out.print(f"next: System A's bright-field table with `ctcid ablate {o}/dataset {o}/ablate`")


def explained(res) -> None:
    """What ``ctcid explain`` wrote and how its saliency maps scored."""
    s = res.summary
    out.print(f"{len(res.cells)} cells explained in {res.out}")
    if s.get("method") is None:
        return
    where = f" at {s['layer']} ({'x'.join(map(str, s['grid']))} grid)" if s.get("layer") and s.get("grid") else ""
    out.print(f"saliency: {s['method']}{where}")
    if s.get("masks"):
        out.print(
            f"against the {s['masks']} masks: mass in cell {s.get('mass_in_cell')}, pointing game "
            f"{s.get('pointing_game')} (cell area: {s.get('cell_area_fraction')} of the crop); nucleus "
            f"{s.get('mass_in_nucleus')} / {s.get('pointing_game_nucleus')}"
        )
    else:
        out.print(
            "no cell masks to score against (`ctcid segment` the dataset, or ingest a synth export with masks)"
        )
    out.print(
        f"randomisation similarity {s.get('randomisation_similarity')} (1: maps do not depend on the weights)"
    )
