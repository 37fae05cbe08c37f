"""Why a model calls a cell a CTC: global importance and per-cell attributions of the features."""

from __future__ import annotations

from .cells import ExplainResult, explain_cells
from .features import explain_feature_model, feature_attributions, permutation_importance_table, plot_importance
from .gradcam import cell_panel_png, gradcam_maps, last_conv

__all__ = [
    "ExplainResult",
    "cell_panel_png",
    "explain_cells",
    "explain_feature_model",
    "feature_attributions",
    "gradcam_maps",
    "last_conv",
    "permutation_importance_table",
    "plot_importance",
]
