"""Figures of a survival analysis, returned as PNG bytes: Kaplan-Meier curves with numbers at risk, Bland-Altman.

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas, without ``pyplot`` (no
global state, no display). The curves are drawn from lifelines' estimates, not by lifelines' own plotting,
which goes through ``pyplot``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CtcidError
from .stats import kaplan_meier

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_bland_altman", "plot_km"]

_DPI = 110
_COLOURS = ("#1a5fb4", "#c01c28")


def _figure(**kwargs) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CtcidError("survival figures need matplotlib; install it with `pip install matplotlib`") from None
    kwargs.setdefault("layout", "constrained")
    return Figure(**kwargs)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _ticks(t_max: float) -> np.ndarray:
    """About six round time points from 0 to ``t_max`` (months)."""
    from matplotlib.ticker import MaxNLocator

    if t_max <= 0:
        return np.array([0.0, 1.0])
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 3, 6, 10]).tick_values(0.0, t_max)
    return ticks[(ticks >= 0) & (ticks <= t_max * 1.0001)]


def plot_km(
    time: object,
    event: object,
    high: object,
    *,
    title: str,
    labels: Sequence[str] = ("low", "high"),
    unit: str = "",
    annotation: str = "",
) -> bytes:
    """Kaplan-Meier curves of two groups with 95% bands, censoring ticks and numbers at risk below.

    Parameters
    ----------
    time, event
        Follow-up (months) and event indicator per patient.
    high
        True for the group at or above the cut-off (drawn second, in red).
    title
        Figure title.
    labels
        Short names of the low and the high group (``"< 5"``, ``">= 5"``), also used in the table at risk.
    unit
        Written after a group's name in the legend (``"CTCs per 7.5 mL"``).
    annotation
        Text written in the corner of the plot (e.g. the hazard ratio and the log-rank p-value).

    Returns
    -------
    bytes
        The PNG image.
    """
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=np.int64)
    g = np.asarray(high, dtype=bool)
    fig = _figure(figsize=(6.6, 5.2))
    grid = fig.add_gridspec(2, 1, height_ratios=(4.6, 0.7))
    ax = fig.add_subplot(grid[0])
    table = fig.add_subplot(grid[1], sharex=ax)
    ticks = _ticks(float(t.max()) if t.size else 0.0)
    groups = [(labels[0], ~g, _COLOURS[0]), (labels[1], g, _COLOURS[1])]
    shown = []
    for label, mask, colour in groups:
        if not mask.any():
            continue
        k = kaplan_meier(t[mask], e[mask], label=label)
        sf = k.survival_function_.iloc[:, 0]
        ci = k.confidence_interval_
        x = sf.index.to_numpy(np.float64)
        ax.step(
            x,
            sf.to_numpy(),
            where="post",
            color=colour,
            lw=1.8,
            label=f"{label} {unit}: n = {int(mask.sum())}, events = {int(e[mask].sum())}".replace("  ", " "),
        )
        ax.fill_between(
            x, ci.iloc[:, 0].to_numpy(), ci.iloc[:, 1].to_numpy(), step="post", color=colour, alpha=0.13, lw=0
        )
        cens = np.unique(t[mask][e[mask] == 0])
        if cens.size:
            ax.plot(cens, k.survival_function_at_times(cens).to_numpy(), "|", color=colour, ms=7, mew=1.1)
        shown.append((label, mask, colour))
    ax.set_ylim(0, 1.03)
    ax.set_xlim(0, max(float(t.max()) if t.size else 1.0, ticks[-1]) * 1.02)
    ax.set_xticks(ticks)
    ax.set_ylabel("survival probability")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.25)
    # survival curves fall from the top left, so the top right corner is free
    if annotation:
        ax.text(0.98, 0.98, annotation, transform=ax.transAxes, ha="right", va="top", fontsize=8.5)
    n_lines = annotation.count("\n") + 1 if annotation else 0
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.99 - 0.055 * n_lines), fontsize=8, frameon=False)
    ax.tick_params(labelbottom=True)
    ax.set_xlabel("months since blood draw")
    table.set_ylim(-0.5, len(shown) - 0.5)
    table.invert_yaxis()
    for row, (label, mask, colour) in enumerate(shown):
        at_risk = (t[mask][None, :] >= ticks[:, None]).sum(axis=1)
        for x, n in zip(ticks, at_risk, strict=True):
            table.text(x, row, str(int(n)), ha="center", va="center", fontsize=8, color=colour)
        table.text(
            -0.03,
            row,
            label,
            transform=table.get_yaxis_transform(),
            ha="right",
            va="center",
            fontsize=8,
            color=colour,
        )
    table.set_title("number at risk", fontsize=8, loc="left")
    table.axis("off")
    return _png(fig)


def plot_bland_altman(reference: object, others: Mapping[str, object], *, reference_name: str) -> bytes:
    """Bland-Altman plots of each source against the reference (CTCs per 7.5 mL), one panel each, two a row.

    Each panel shows the difference ``source - reference`` against the mean of the two, the mean difference
    (bias, solid) and the 95% limits of agreement (bias ± 1.96 SD, dashed). Points that coincide are drawn
    larger (area proportional to how many patients share them).
    """
    ref = np.asarray(reference, dtype=np.float64)
    n = max(1, len(others))
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = _figure(figsize=(5.0 * cols, 4.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(others) :]:
        ax.set_visible(False)
    for ax, (name, values) in zip(axes, others.items(), strict=False):
        o = np.asarray(values, dtype=np.float64)
        mean, diff = (o + ref) / 2, o - ref
        pts, mult = np.unique(np.round(np.stack([mean, diff], axis=1), 6), axis=0, return_counts=True)
        ax.scatter(pts[:, 0], pts[:, 1], s=14 * mult, alpha=0.55, color=_COLOURS[0], lw=0)
        bias = float(diff.mean())
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        ax.axhline(bias, color="#333", lw=1.2)
        for lim in (bias - 1.96 * sd, bias + 1.96 * sd):
            ax.axhline(lim, color="#333", lw=1.0, ls="--")
        ax.axhline(0, color="#999", lw=0.8, ls=":")
        ax.text(
            0.98,
            0.97,
            f"bias {bias:+.2f}\nLoA {bias - 1.96 * sd:+.2f} to {bias + 1.96 * sd:+.2f}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8.5,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
        )
        ax.set_xlabel(f"mean of {name} and {reference_name} (CTCs per 7.5 mL)")
        ax.set_ylabel(f"{name} - {reference_name}")
        ax.set_title(f"{name} against {reference_name} ({len(ref)} patients)", fontsize=10)
        ax.grid(alpha=0.25)
    return _png(fig)
