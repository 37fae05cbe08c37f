"""``features_logreg``: a regularised logistic regression on the standardised feature table, for small studies.

A handful of patients and tens of cells are too few for trees or networks to learn from, but enough for a linear
model with a strong penalty. Missing measures are filled with the training mean, each feature is standardised by
the training cells' mean and spread and clipped to ``+-logreg.clip``; scikit-learn's ``LogisticRegression`` fits
the coefficients (L2, or elastic net with ``l1_ratio``), and the model is exported as plain arrays
(:class:`ctcid.models.LinearModel`).

The regularisation strength C is chosen from ``logreg.c_grid`` on the validation patients when they hold at least
``logreg.min_val_ctc`` CTCs and as many WBCs; otherwise by patient-grouped cross-validation inside the training
cells (their pooled out-of-fold predictions), and the run records which (``run.json``: ``model_selection``). Ties
go to the smaller C (the stronger penalty). Calibration and threshold then come from the validation patients,
as for every model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..models import LinearModel
from ._features import balanced_shift, feature_fitted, training_features
from .config import TrainConfig
from .finish import Fitted
from .run import TrainingRun

__all__ = ["choose_c", "fit_linear", "logistic_regression", "standardisation"]


def logistic_regression(C: float, l1_ratio: float, *, balanced: bool, seed: int, max_iter: int) -> object:
    """An unfitted scikit-learn ``LogisticRegression``: L2 (lbfgs) or, with ``l1_ratio > 0``, elastic net (saga),
    across scikit-learn versions (``penalty`` is deprecated from 1.8)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    kw = {
        "C": C,
        "class_weight": "balanced" if balanced else None,
        "max_iter": max_iter,
        "random_state": seed,
        "solver": "lbfgs" if l1_ratio == 0 else "saga",
    }
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        kw["l1_ratio"] = float(l1_ratio)
    elif l1_ratio > 0:
        kw.update(penalty="elasticnet", l1_ratio=float(l1_ratio))
    return LogisticRegression(**kw)


def standardisation(X: np.ndarray, clip: float) -> LinearModel:
    """A :class:`LinearModel` holding only the standardisation of the rows ``X`` (zero coefficients): the fill
    value of each column (its finite mean, 0 when it has none) and the mean and spread of the filled columns (a
    constant column is given a spread of 1)."""
    finite = np.isfinite(X)
    counts = finite.sum(axis=0)
    fill = np.where(counts > 0, np.where(finite, X, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
    filled = np.where(finite, X, fill[None, :])
    scale = filled.std(axis=0)
    scale = np.where(scale > 1e-12 * np.maximum(np.abs(fill), 1.0), scale, 1.0)
    return LinearModel(np.zeros(X.shape[1]), 0.0, mean=filled.mean(axis=0), scale=scale, fill=fill, clip=clip)


def _score(y: np.ndarray, logits: np.ndarray, monitor: str, shift: float) -> float:
    """The validation metric of some logits: PR-AUC, or minus the log loss of the shift-corrected probabilities."""
    from sklearn.metrics import average_precision_score, log_loss

    if monitor == "val_pr_auc":
        return float(average_precision_score(y, logits))
    p = 1.0 / (1.0 + np.exp(-(logits - shift)))
    return -float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))


def _inner_splits(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped, stratified inner folds of the training cells whose both sides hold both classes."""
    from sklearn.model_selection import StratifiedGroupKFold

    ctc_groups = np.unique(groups[y == 1]).size
    k = min(k, ctc_groups, np.unique(groups).size)
    if k < 2:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros((len(y), 1)), y, groups))
    return [(tr, te) for tr, te in folds if len(np.unique(y[tr])) == 2]


def choose_c(
    Z: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    cfg: TrainConfig,
    *,
    balanced: bool,
    shift: float,
) -> tuple[float, str, pd.DataFrame]:
    """The C of ``cfg.logreg.c_grid`` with the best validation metric (``cfg.monitor``), how it was chosen, and
    the metric for every C (the run's ``history.csv``). See the module docstring for the rule."""
    opts = cfg.logreg
    grid = sorted(float(c) for c in opts.c_grid)
    y_val = y[val]
    few = min(int((y_val == 1).sum()), int((y_val == 0).sum())) < opts.min_val_ctc
    inner = _inner_splits(y[train], groups[train], opts.inner_folds, cfg.seed) if few else []
    if inner:
        how = (
            f"inner {len(inner)}-fold patient-grouped cross-validation on the training cells (the validation "
            f"patients hold {int((y_val == 1).sum())} CTC and {int((y_val == 0).sum())} WBC, fewer than "
            f"{opts.min_val_ctc})"
        )
    else:
        how = f"the validation patients ({len(val)} cells, {int((y_val == 1).sum())} CTC)"
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes of the weakest penalties
        for i, C in enumerate(grid):
            clf = logistic_regression(C, cfg.l1_ratio, balanced=balanced, seed=cfg.seed, max_iter=opts.max_iter)
            if inner:
                logits = np.empty(len(train))
                for tr, te in inner:
                    clf.fit(Z[train[tr]], y[train[tr]])
                    logits[te] = clf.decision_function(Z[train[te]])
                scored = np.concatenate([te for _, te in inner])
                value = _score(y[train[scored]], logits[scored], cfg.monitor, shift)
            else:
                clf.fit(Z[train], y[train])
                value = _score(y_val, clf.decision_function(Z[val]), cfg.monitor, shift)
            rows.append({"epoch": i, "C": C, cfg.monitor: value if cfg.monitor == "val_pr_auc" else -value})
    history = pd.DataFrame(rows)
    score = history[cfg.monitor].to_numpy() * (1 if cfg.monitor == "val_pr_auc" else -1)
    best = int(np.flatnonzero(score >= score.max() - 1e-12)[0])  # ties: the smaller C
    return grid[best], how, history


def fit_linear(run: TrainingRun, log: Callable[[str], None] | None = None) -> Fitted:
    """Fit ``features_logreg`` on the run's training cells (see the module docstring)."""
    say = log or (lambda _m: None)
    cfg, labels = run.cfg, run.labels
    X, names = training_features(run, say)
    train, val = run.train_cells, run.val_cells
    y = np.where(labels > 0, 1, 0).astype(int)
    scaler = standardisation(X[train], cfg.logreg.clip)
    Z = scaler.standardise(X)
    balanced, shift = balanced_shift(cfg, y[train])
    C, how, history = choose_c(Z, y, run.groups, train, val, cfg, balanced=balanced, shift=shift)
    penalty = "L2" if cfg.l1_ratio == 0 else f"elastic net (l1_ratio {cfg.l1_ratio:g})"
    say(f"logistic regression, {penalty}, {len(train)} cells, {len(names)} features: C={C:g}, chosen by {how}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = logistic_regression(C, cfg.l1_ratio, balanced=balanced, seed=cfg.seed, max_iter=cfg.logreg.max_iter)
        clf.fit(Z[train], y[train])
    model = LinearModel(
        clf.coef_.ravel(), float(clf.intercept_[0]), scaler.mean, scaler.scale, scaler.fill, scaler.clip
    )
    return feature_fitted(
        run,
        "features_logreg",
        model,
        X,
        names,
        {"C": C, "l1_ratio": cfg.l1_ratio, "selection": how, "nonzero": int((model.coef != 0).sum())},
        prior_shift=shift,
        best_epoch=int(history.index[history["C"] == C][0]),
        history=history,
        feature_baseline=scaler.fill,
        extra={"model_selection": f"C={C:g} by {how}"},
    )
