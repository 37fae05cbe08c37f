"""Gradient-boosted trees in a portable form: plain arrays in safetensors, evaluated with numpy.

scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` trains the trees; the fitted
trees are then read into :class:`TreeEnsemble`, flat node arrays (feature, threshold, children, where
missing values go, leaf value) that any language can evaluate. Nothing is pickled. The decision rule is
scikit-learn's: a missing value follows the node's learned side, otherwise ``x <= threshold`` goes left,
on float64 inputs; the logit is the baseline plus the sum of the leaf values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TreeEnsemble"]


@dataclass
class TreeEnsemble:
    """Binary-classification trees as flat arrays; ``roots[t]`` is the first node of tree ``t``."""

    feature: np.ndarray  # int32 [nodes]
    threshold: np.ndarray  # float64 [nodes]
    left: np.ndarray  # int32 [nodes], absolute node index
    right: np.ndarray  # int32 [nodes]
    missing_left: np.ndarray  # uint8 [nodes]
    is_leaf: np.ndarray  # uint8 [nodes]
    value: np.ndarray  # float64 [nodes]
    roots: np.ndarray  # int32 [trees]
    baseline: float
    n_features: int

    @classmethod
    def from_sklearn(cls, clf: Any, n_trees: int | None = None) -> TreeEnsemble:
        """Read the first ``n_trees`` boosting rounds of a fitted binary ``HistGradientBoostingClassifier``."""
        preds = clf._predictors[: n_trees or len(clf._predictors)]
        if any(len(p) != 1 for p in preds):
            raise ValueError("only binary classifiers (one tree per round) are supported")
        nodes = [p[0].nodes for p in preds]
        if any(n["is_categorical"].any() for n in nodes):
            raise ValueError("categorical splits are not supported")
        offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]]).astype(np.int64)
        cat = np.concatenate(nodes) if nodes else np.zeros(0, nodes_dtype())
        shift = np.repeat(offsets, [len(n) for n in nodes])
        return cls(
            feature=cat["feature_idx"].astype(np.int32),
            threshold=cat["num_threshold"].astype(np.float64),
            left=(cat["left"].astype(np.int64) + shift).astype(np.int32),
            right=(cat["right"].astype(np.int64) + shift).astype(np.int32),
            missing_left=cat["missing_go_to_left"].astype(np.uint8),
            is_leaf=cat["is_leaf"].astype(np.uint8),
            value=cat["value"].astype(np.float64),
            roots=offsets.astype(np.int32),
            baseline=float(np.ravel(clf._baseline_prediction)[0]),
            n_features=int(clf.n_features_in_),
        )

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def decision_function(self, X: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Logit of the positive class for each row of ``X`` ``[n, n_features]`` (NaN = missing)."""
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected [n, {self.n_features}] features, got {X.shape}")
        out = np.empty(len(X), np.float64)
        for lo in range(0, len(X), batch):
            out[lo : lo + batch] = self._logits(X[lo : lo + batch])
        return out

    def _logits(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        if self.n_trees == 0:
            return np.full(n, self.baseline)
        node = np.broadcast_to(self.roots[None, :], (n, self.n_trees)).astype(np.int64)
        for _ in range(len(self.feature) + 1):  # a path never visits more nodes than there are
            active = ~self.is_leaf[node].astype(bool)
            if not active.any():
                break
            r, t = np.nonzero(active)
            cur = node[r, t]
            x = X[r, self.feature[cur]]
            go_left = np.where(np.isnan(x), self.missing_left[cur].astype(bool), x <= self.threshold[cur])
            node[r, t] = np.where(go_left, self.left[cur], self.right[cur])
        else:
            raise ValueError("tree arrays contain a cycle")
        return self.baseline + self.value[node].sum(axis=1)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays, for safetensors."""
        return {
            "feature": self.feature,
            "threshold": self.threshold,
            "left": self.left,
            "right": self.right,
            "missing_left": self.missing_left,
            "is_leaf": self.is_leaf,
            "value": self.value,
            "roots": self.roots,
            "baseline": np.array([self.baseline], np.float64),
            "n_features": np.array([self.n_features], np.int64),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> TreeEnsemble:
        """Rebuild from :meth:`state_dict` arrays, checking that every child index is in range."""
        keys = ("feature", "threshold", "left", "right", "missing_left", "is_leaf", "value", "roots")
        missing = [k for k in (*keys, "baseline", "n_features") if k not in state]
        if missing:
            raise ValueError(f"tree arrays lack {', '.join(missing)}")
        n = len(state["feature"])
        if any(len(state[k]) != n for k in keys[:-1]):
            raise ValueError("tree arrays have different lengths")
        inner = ~state["is_leaf"].astype(bool)
        for k in ("left", "right"):
            if ((state[k][inner] < 0) | (state[k][inner] >= n)).any():
                raise ValueError(f"tree arrays: {k} child index out of range")
        n_features = int(state["n_features"][0])
        if ((state["feature"][inner] < 0) | (state["feature"][inner] >= n_features)).any() or (
            (state["roots"] < 0) | (state["roots"] >= max(n, 1))
        ).any():
            raise ValueError("tree arrays: feature or root index out of range")
        return cls(
            feature=state["feature"].astype(np.int32),
            threshold=state["threshold"].astype(np.float64),
            left=state["left"].astype(np.int32),
            right=state["right"].astype(np.int32),
            missing_left=state["missing_left"].astype(np.uint8),
            is_leaf=state["is_leaf"].astype(np.uint8),
            value=state["value"].astype(np.float64),
            roots=state["roots"].astype(np.int32),
            baseline=float(state["baseline"][0]),
            n_features=n_features,
        )


def nodes_dtype() -> np.dtype:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    return PREDICTOR_RECORD_DTYPE
