"""The feature inputs of System B's models: which columns of the cached table a model reads."""

from __future__ import annotations

import numpy as np

from ..io import CellDataset
from .config import TrainConfig

__all__ = ["feature_inputs", "select_features"]


def select_features(catalogue_names: list[str], catalogue_channels: list[str], channels: list[str]) -> list[str]:
    """Columns a model on ``channels`` may read: morphology (from the segmentation) and the measures of
    those channels only, so a bright-field model never sees fluorescence."""
    allowed = set(channels)
    return [
        n
        for n, ch in zip(catalogue_names, catalogue_channels, strict=True)
        if not ch or set(ch.split(";")) <= allowed
    ]


def feature_inputs(
    ds: CellDataset, cfg: TrainConfig, names: list[str] | None = None, *, workers: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Feature matrix ``[cells, F]`` (float32, NaN where a measure is undefined) and its column names.

    Segmentation and features are computed once and cached in the dataset (see :mod:`ctcid.features`).
    ``names`` picks given columns (a bundle's); otherwise :func:`select_features` over ``cfg.channels``.
    """
    from ..errors import CtcidError
    from ..features import compute_features, feature_catalogue

    fcfg = cfg.feature_config()
    table = compute_features(ds, cfg.segment_config(), fcfg, workers=workers)
    if names is None:
        cat = feature_catalogue(ds.channels, fcfg)
        names = select_features(cat["name"].tolist(), cat["channels"].fillna("").tolist(), cfg.channels)
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise CtcidError(
            f"the feature table lacks {', '.join(missing[:3])} (the model was made for other data)", ds.path
        )
    return table[names].to_numpy(np.float32), list(names)
