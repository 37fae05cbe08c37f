"""System B's classical baseline: gradient-boosted trees on the feature table.

scikit-learn grows the trees; the number kept is the round with the best validation PR-AUC (the validation
patients, never the test ones), and the kept trees are exported to portable arrays
(:class:`ctcid.models.TreeEnsemble`), so the bundle holds no pickle. Trees train in seconds, so a resumed run
simply trains again from the start.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..models import TreeEnsemble
from ._features import balanced_shift, feature_fitted, training_features
from .config import auto_min_samples_leaf
from .finish import Fitted
from .run import TrainingRun

__all__ = ["fit_trees"]


def _staged_history(clf: object, X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Validation loss and PR-AUC after each boosting round (the trees' "epochs")."""
    from sklearn.metrics import average_precision_score, log_loss

    rows = []
    for i, raw in enumerate(clf.staged_decision_function(X)):  # type: ignore[attr-defined]
        p = 1.0 / (1.0 + np.exp(-np.ravel(raw)))
        rows.append(
            {
                "epoch": i,
                "val_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
                "val_pr_auc": float(average_precision_score(y, p)),
            }
        )
    return pd.DataFrame(rows)


def fit_trees(run: TrainingRun, log: Callable[[str], None] | None = None) -> Fitted:
    """Grow ``features_gbm`` on the run's training cells and keep the best number of trees."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    say = log or (lambda _m: None)
    cfg, labels = run.cfg, run.labels
    X, names = training_features(run, say)
    opts = cfg.gbm.to_dict()
    if opts["min_samples_leaf"] is None:
        opts["min_samples_leaf"] = auto_min_samples_leaf(len(run.train_cells))
    balanced, shift = balanced_shift(cfg, labels[run.train_cells])
    clf = HistGradientBoostingClassifier(
        **opts, early_stopping=False, class_weight="balanced" if balanced else None, random_state=cfg.seed
    )
    say(
        f"growing up to {opts['max_iter']} trees on {len(run.train_cells)} cells, {len(names)} features "
        f"(at least {opts['min_samples_leaf']} cells a leaf)"
    )
    clf.fit(X[run.train_cells], labels[run.train_cells].astype(int))
    history = _staged_history(clf, X[run.val_cells], labels[run.val_cells].astype(int))
    key = cfg.monitor
    best = int(history[key].idxmax() if key == "val_pr_auc" else history[key].idxmin())
    trees = TreeEnsemble.from_sklearn(clf, best + 1)
    train_mean = np.nanmean(np.where(np.isfinite(X[run.train_cells]), X[run.train_cells], np.nan), axis=0)
    return feature_fitted(
        run,
        "features_gbm",
        trees,
        X,
        names,
        {"trees": trees.n_trees, **opts},
        prior_shift=shift,
        best_epoch=best,
        history=history,
        feature_baseline=np.where(np.isfinite(train_mean), train_mean, 0.0),
    )
