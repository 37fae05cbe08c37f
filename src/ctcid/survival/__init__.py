"""Do CTC counts predict survival? Kaplan-Meier, log-rank, Cox regression and C-index per source of counts,
and the comparison of each source (e.g. a model's counts) with a reference (e.g. manual counts).

The field's reference is CellSearch: at least 5 CTCs per 7.5 mL of blood predicts shorter progression-free and
overall survival (Cristofanilli et al., NEJM 2004), and automated counts were judged against manual ones by
their hazard ratios (Ligthart et al., PLoS ONE 2011). All survival statistics come from lifelines.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from ctcid.survival import survival_analysis
>>> rng = np.random.default_rng(1)
>>> n = 80
>>> count = rng.poisson(3, n)
>>> clinical = pd.DataFrame({"sample_id": [f"P{i}" for i in range(n)],
...                          "time_months": rng.exponential(40 / (1 + count)), "event": 1})
>>> ids = clinical["sample_id"]
>>> counts = {"manual": pd.DataFrame({"sample_id": ids, "true_ctc": count}),
...           "noisy": pd.DataFrame({"sample_id": ids, "ctc_estimate": count + rng.poisson(1, n)})}
>>> res = survival_analysis(clinical, counts, n_boot=0)
>>> res.result["patients"], sorted(res.result["sources"]), res.result["comparison"]["source"]
(80, ['manual', 'noisy'], 'noisy')
>>> res.result["sources"]["manual"]["c_index"] > 0.6
True
"""

from __future__ import annotations

from .analysis import (
    FORMAT_VERSION,
    SurvivalResult,
    analyse_survival,
    comparison_table,
    summary_table,
    survival_analysis,
    to_markdown,
    verdict,
)
from .data import COUNT_COLUMNS, PER_ML, CountSource, parse_count_columns, parse_named, read_clinical, read_counts
from .html import survival_section_html
from .plots import plot_bland_altman, plot_km
from .stats import (
    MIN_EVENTS_COX,
    agreement,
    bootstrap_intervals,
    c_index,
    cohen_kappa,
    cox_model,
    km_table,
    logrank,
    median_follow_up,
    optimal_cutoff,
)

__all__ = [
    "COUNT_COLUMNS",
    "FORMAT_VERSION",
    "MIN_EVENTS_COX",
    "PER_ML",
    "CountSource",
    "SurvivalResult",
    "agreement",
    "analyse_survival",
    "bootstrap_intervals",
    "c_index",
    "cohen_kappa",
    "comparison_table",
    "cox_model",
    "km_table",
    "logrank",
    "median_follow_up",
    "optimal_cutoff",
    "parse_count_columns",
    "parse_named",
    "plot_bland_altman",
    "plot_km",
    "read_clinical",
    "read_counts",
    "summary_table",
    "survival_analysis",
    "survival_section_html",
    "to_markdown",
    "verdict",
]
