"""The survival analysis as an HTML fragment for the operator report.

The fragment is self-contained: tables, text and PNG figures embedded as ``data:`` URIs; no script, style sheet,
font or link to fetch. It uses the report's classes (``note``, ``plots``) and plain tables, so it takes the
report's look when included and stays readable on its own.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .analysis import comparison_table, summary_table, verdict

__all__ = ["survival_section_html"]


def _esc(x: object) -> str:
    return html.escape(str(x))


def _table(frame: pd.DataFrame, cls: str) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(name: str, png: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(name)}" src="{uri}">'


def survival_section_html(result: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """An HTML ``<section>`` with the survival analysis: per-source table, comparisons, notes and figures.

    Parameters
    ----------
    result
        The content of ``survival.json`` (:attr:`SurvivalResult.result`).
    images
        PNG bytes by file name (:attr:`SurvivalResult.images`, or the files of a ``ctcid survival`` folder):
        ``km_<NAME>.png`` and ``bland_altman.png`` are shown when present.

    Returns
    -------
    str
        The fragment, starting with ``<section class="survival">``.

    Examples
    --------
    >>> r = {"patients": 12, "events": 9, "median_follow_up_months": None, "cutoff": 5.0, "reference": "manual",
    ...      "covariates": [], "sources": {}, "comparisons": {}, "notes": ["only 12 patients"], "n_boot": 0}
    >>> frag = survival_section_html(r, {})
    >>> frag.startswith('<section class="survival">'), "<script" in frag
    (True, False)
    """
    cut = f"{result['cutoff']:g}"
    fu = result.get("median_follow_up_months")
    follow = "not estimable" if fu is None else f"{fu:.1f} months"
    rounded = " (counts rounded to whole numbers first)" if result.get("round_counts") else ""
    covs = ", ".join(result.get("covariates") or []) or "none"
    parts = [
        '<section class="survival">',
        "<h2>Survival by CTC count</h2>",
        f'<p class="note">{_esc(result["patients"])} patients, {_esc(result["events"])} events, median follow-up '
        f"{follow} (reverse Kaplan-Meier); cut-off {_esc(cut)} CTCs per 7.5 mL{rounded}; reference: "
        f"{_esc(result['reference'])}; Cox models adjusted for: {_esc(covs)}. Hazard "
        "ratios with 95% Wald intervals; C-index (Harrell) with a patient-bootstrap 95% interval.</p>",
    ]
    if result.get("sources"):
        parts.append(_table(summary_table(result), "survival"))
    for name, comp in (result.get("comparisons") or {}).items():
        parts += [
            f"<h3>{_esc(name)} against {_esc(result['reference'])}</h3>",
            _table(comparison_table(comp, result["cutoff"]), "survival-comparison"),
            f"<p>{_esc(verdict(comp))}</p>",
        ]
    if result.get("notes"):
        parts.append('<ul class="note">' + "".join(f"<li>{_esc(n)}</li>" for n in result["notes"]) + "</ul>")
    figures = [f"km_{n}.png" for n in result.get("sources") or {}] + ["bland_altman.png"]
    shown = [_img(f, images[f]) for f in figures if f in images]
    if shown:
        parts.append('<div class="plots">' + "".join(shown) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)
