"""Why a model calls a cell a CTC: saliency maps of image models (scored against cell and nucleus masks and
sanity-checked against a re-initialised model), global importance and per-cell attributions of the features."""

from __future__ import annotations

from .branches import branch_contributions
from .cells import EXPLAIN_FILE, ExplainResult, explain_cells, explain_images, select_cells
from .features import explain_feature_model, feature_attributions, permutation_importance_table, plot_importance
from .panels import cell_panel_png
from .saliency import (
    DEFAULT_METHOD,
    METHODS,
    attribute_images,
    bundle_maps,
    choose_layer,
    normalise_maps,
    randomised_model,
    saliency_maps,
)
from .scores import mask_scores, rank_similarity, reference_masks

__all__ = [
    "DEFAULT_METHOD",
    "EXPLAIN_FILE",
    "METHODS",
    "ExplainResult",
    "attribute_images",
    "branch_contributions",
    "bundle_maps",
    "cell_panel_png",
    "choose_layer",
    "explain_cells",
    "explain_feature_model",
    "explain_images",
    "feature_attributions",
    "mask_scores",
    "normalise_maps",
    "permutation_importance_table",
    "plot_importance",
    "randomised_model",
    "rank_similarity",
    "reference_masks",
    "saliency_maps",
    "select_cells",
]
