"""The feature inputs of System B's models: which columns of the cached feature table a model reads."""

from __future__ import annotations

import numpy as np

from ..errors import CtcidError
from ..features import FeatureConfig, compute_features, feature_catalogue
from ..io import CellDataset
from ..segment import SegmentConfig

__all__ = ["feature_matrix", "select_features"]


def select_features(catalogue_names: list[str], catalogue_channels: list[str], channels: list[str]) -> list[str]:
    """Columns a model on ``channels`` may read: morphology (from the segmentation) and the measures of
    those channels only, so a bright-field model never sees fluorescence.

    >>> select_features(["cell_area_um2", "bf_mean_counts", "ck_mean_counts"], ["", "BF", "CK"], ["BF"])
    ['cell_area_um2', 'bf_mean_counts']
    """
    allowed = set(channels)
    return [
        n
        for n, ch in zip(catalogue_names, catalogue_channels, strict=True)
        if not ch or set(ch.split(";")) <= allowed
    ]


def feature_matrix(
    ds: CellDataset,
    segmentation: SegmentConfig,
    features: FeatureConfig,
    *,
    channels: list[str] | None = None,
    names: list[str] | None = None,
    workers: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Feature matrix ``[cells, F]`` (float32, NaN where a measure is undefined) and its column names.

    Segmentation and features are computed once and cached in the dataset (see :mod:`ctcid.features`).
    ``names`` picks given columns (a bundle's); otherwise :func:`select_features` over ``channels``.
    """
    table = compute_features(ds, segmentation, features, workers=workers)
    if names is None:
        cat = feature_catalogue(ds.channels, features)
        names = select_features(cat["name"].tolist(), cat["channels"].fillna("").tolist(), channels or ds.channels)
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise CtcidError(
            f"the dataset's features lack {', '.join(missing[:3])} that the model reads (other channels?)", ds.path
        )
    return table[names].to_numpy(np.float32), list(names)
