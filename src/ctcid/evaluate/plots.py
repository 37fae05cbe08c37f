"""Evaluation figures written as PNG files: PR/ROC curves, confusion matrix, reliability diagram, training
curves and model comparisons.

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas, without ``pyplot``:
no global figure state, no display needed, safe in worker processes. matplotlib is imported only when a figure
is drawn, so the rest of :mod:`ctcid.evaluate` works without it. Each function writes its file atomically and
returns its path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from ..errors import CtcidError
from ..io._atomic import atomic_write_bytes
from ._checks import as_binary, as_scores, check_lengths

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_calibration",
    "plot_confusion",
    "plot_model_comparison",
    "plot_pr_roc",
    "plot_training_curves",
]

CLASS_NAMES = ("wbc", "ctc")
_DPI = 120


def _figure(**kwargs) -> Figure:
    """A new figure not attached to ``pyplot``; a clear error when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CtcidError(
            "the evaluation plots need matplotlib; install it with `pip install matplotlib`"
        ) from None
    kwargs.setdefault("layout", "constrained")
    return Figure(**kwargs)


def _save(fig: Figure, out_png: str | os.PathLike[str]) -> Path:
    out = Path(out_png)
    try:
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CtcidError(f"cannot create the folder: {exc.strerror}", out.absolute().parent) from None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return atomic_write_bytes(out, buf.getvalue())


def _undefined(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def plot_pr_roc(
    y_true: object,
    p: object,
    out_png: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    title: str | None = None,
) -> Path:
    """Precision-recall (left) and ROC (right) curves of the CTC class.

    The PR panel shows the prevalence baseline (a classifier without skill) and, when ``threshold`` is given,
    the operating point of the calls ``p >= threshold``, also marked on the ROC panel. The legends give the
    average precision and the ROC-AUC.
    """
    y = as_binary(y_true)
    s = as_scores(p)
    check_lengths(y_true=y, p=s)
    fig = _figure(figsize=(10, 4.5))
    ax_pr, ax_roc = fig.subplots(1, 2)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos:
        precision, recall, _ = precision_recall_curve(y, s)
        ap = average_precision_score(y, s)
        ax_pr.step(recall, precision, where="post", color="C0", label=f"PR curve (AP = {ap:.3f})")
        ax_pr.axhline(n_pos / y.size, color="grey", ls="--", lw=1, label=f"prevalence = {n_pos / y.size:.3f}")
    else:
        _undefined(ax_pr, "no CTC in the labels:\nprecision-recall undefined")
    if n_pos and n_neg:
        fpr, tpr, _ = roc_curve(y, s)
        ax_roc.plot(fpr, tpr, color="C1", label=f"ROC (AUC = {auc(fpr, tpr):.3f})")
        ax_roc.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    else:
        _undefined(ax_roc, "only one class in the labels:\nROC undefined")
    if threshold is not None:
        pred = s >= threshold
        tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
        if n_pos:
            prec_op = tp / (tp + fp) if tp + fp else 0.0
            ax_pr.plot(tp / n_pos, prec_op, "o", color="C3", label=f"threshold {threshold:.3g}")
        if n_pos and n_neg:
            ax_roc.plot(fp / n_neg, tp / n_pos, "o", color="C3", label=f"threshold {threshold:.3g}")
    ax_pr.set(xlabel="recall (sensitivity)", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02), title="CTC PR")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02), title="ROC")
    for ax in (ax_pr, ax_roc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left" if ax is ax_pr else "lower right", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def plot_confusion(
    y_true: object, y_pred: object, out_png: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """2x2 confusion matrix (rows: true class, columns: called class) with counts and row percentages."""
    y = as_binary(y_true)
    yp = as_binary(y_pred, "y_pred")
    check_lengths(y_true=y, y_pred=yp)
    counts = np.zeros((2, 2), dtype=np.int64)
    np.add.at(counts, (y, yp), 1)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros((2, 2)), where=rows > 0)
    fig = _figure(figsize=(4.6, 4))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            pct = f"{100 * frac[i, j]:.1f}%" if rows[i, 0] else "n/a"
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n({pct})",
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set_xticks([0, 1], labels=list(CLASS_NAMES))
    ax.set_yticks([0, 1], labels=list(CLASS_NAMES))
    ax.set(xlabel="called", ylabel="true")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row fraction")
    ax.set_title(title or "confusion matrix")
    return _save(fig, out_png)


def plot_calibration(
    y_true: object,
    p: object,
    out_png: str | os.PathLike[str],
    *,
    n_bins: int = 10,
    strategy: str = "uniform",
    title: str | None = None,
) -> Path:
    """Reliability diagram (observed CTC fraction per bin of ``p``) above a histogram of ``p``.

    Bins come from ``sklearn.calibration.calibration_curve`` with ``strategy`` ``"uniform"`` or ``"quantile"``.
    The histogram uses a log count axis, since most cells are confidently WBC.
    """
    y = as_binary(y_true)
    s = as_scores(p)
    check_lengths(y_true=y, p=s)
    if strategy not in ("uniform", "quantile"):
        raise CtcidError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    fig = _figure(figsize=(5, 6))
    ax, ax_h = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    if y.size:
        from sklearn.calibration import calibration_curve

        frac_pos, mean_pred = calibration_curve(y, s, n_bins=n_bins, strategy=strategy)
        ax.plot(mean_pred, frac_pos, "o-", color="C0", label="model")
    ax.set(ylabel="observed CTC fraction", xlim=(0, 1), ylim=(-0.02, 1.02), title=title or "calibration")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_h.hist(s, bins=np.linspace(0, 1, max(n_bins, 2) * 2 + 1), color="C0", alpha=0.7, log=True)
    ax_h.set(xlabel="predicted CTC probability", ylabel="cells")
    return _save(fig, out_png)


_CURVES = {
    "loss": ("train_loss", "val_loss"),
    "score": ("val_f1", "val_pr_auc"),
    "learning rate": ("lr",),
}


def plot_training_curves(history: pd.DataFrame, out_png: str | os.PathLike[str]) -> Path:
    """Loss, validation scores and learning rate per epoch, one panel per group present in ``history``.

    ``history`` has an ``epoch`` column (else its row number is used) and any of ``train_loss``, ``val_loss``,
    ``val_f1``, ``val_pr_auc`` and ``lr``.
    """
    panels = {name: [c for c in cols if c in history.columns] for name, cols in _CURVES.items()}
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        wanted = ", ".join(c for cols in _CURVES.values() for c in cols)
        raise CtcidError(f"the training history has none of the columns {wanted}")
    x = history["epoch"].to_numpy() if "epoch" in history.columns else np.arange(1, len(history) + 1)
    fig = _figure(figsize=(4.2 * len(panels), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, cols) in zip(axes, panels.items(), strict=True):
        for col in cols:
            ax.plot(x, history[col].to_numpy(dtype=float), marker="." if len(history) < 50 else None, label=col)
        if name == "learning rate" and (history["lr"] > 0).all():
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, out_png)


def plot_model_comparison(table: pd.DataFrame, out_png: str | os.PathLike[str], *, metric: str = "f1") -> Path:
    """Box plot of ``metric`` per model over folds, with each fold's value drawn as a point.

    ``table`` has columns ``model``, ``fold`` and ``metric``; models appear in the order they first occur.
    """
    missing = [c for c in ("model", "fold", metric) if c not in table.columns]
    if missing:
        raise CtcidError(f"the model comparison table lacks column(s) {', '.join(missing)}")
    models = list(dict.fromkeys(table["model"].astype(str)))
    if not models:
        raise CtcidError("the model comparison table is empty")
    values = [table.loc[table["model"].astype(str) == m, metric].to_numpy(dtype=float) for m in models]
    values = [v[np.isfinite(v)] for v in values]
    fig = _figure(figsize=(max(4.0, 1.2 * len(models) + 2), 4))
    ax = fig.subplots()
    ax.boxplot(values, positions=np.arange(1, len(models) + 1), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.plot(i + rng.uniform(-0.12, 0.12, v.size), v, "o", color="C0", alpha=0.7, ms=5)
    ax.set_xticks(np.arange(1, len(models) + 1), labels=models, rotation=30 if len(models) > 4 else 0)
    ax.set(ylabel=metric, title=f"{metric} per fold")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out_png)
