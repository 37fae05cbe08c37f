"""Why a model calls a cell a CTC: global importance and per-cell attributions of the features."""

from __future__ import annotations

from .features import explain_feature_model, feature_attributions, permutation_importance_table, plot_importance

__all__ = ["explain_feature_model", "feature_attributions", "permutation_importance_table", "plot_importance"]
