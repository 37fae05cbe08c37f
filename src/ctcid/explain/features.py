"""Interpretability of the feature inputs of System B's models.

* **Global**: permutation importance (scikit-learn), the drop in validation PR-AUC when one feature's
  values are shuffled across cells, mean and spread over repeats.
* **Per cell**: attributions in logit units against the training mean, with captum: integrated gradients
  for the networks (``features_mlp``; ``dual_branch`` with its image embedding held fixed), Shapley value
  sampling for the gradient-free trees (``features_gbm``); for the logistic regression (``features_logreg``) the
  exact terms of its logit, coefficient x standardised value.

Written into a run folder as ``feature_importance.csv`` / ``.png`` and ``feature_attributions.parquet``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..io._atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "cell_attributions",
    "explain_feature_model",
    "feature_attributions",
    "image_embeddings",
    "permutation_importance_table",
    "plot_importance",
]

#: Cells whose features are attributed per run (the most CTC-like first, then the rest of the test cells).
MAX_ATTRIBUTED = 200


class _Fitted:
    """A prediction function dressed as a fitted estimator, for scikit-learn's permutation importance."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]):
        self.fn = fn

    def fit(self, *_a: Any) -> _Fitted:
        return self


def permutation_importance_table(
    logits_fn: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    *,
    n_repeats: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Drop in PR-AUC (average precision of the CTC class) when each feature is permuted; ranked."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import average_precision_score

    def score(est: _Fitted, Xp: np.ndarray, yy: np.ndarray) -> float:
        return float(average_precision_score(yy, est.fn(Xp)))

    res = permutation_importance(
        _Fitted(logits_fn), X, y, scoring=score, n_repeats=n_repeats, random_state=seed, n_jobs=1
    )
    table = pd.DataFrame(
        {"feature": names, "importance_mean": res.importances_mean, "importance_std": res.importances_std}
    )
    table = table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def feature_attributions(
    forward: Callable[[torch.Tensor], torch.Tensor],
    X: np.ndarray,
    baseline: np.ndarray,
    *,
    differentiable: bool,
    n_samples: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Per-cell attributions ``[n, F]`` (logit units) of ``forward`` at ``X`` against ``baseline`` ``[F]``.

    Missing values (NaN) are set to the baseline first: that is what the models see for them.
    """
    from captum.attr import IntegratedGradients, ShapleyValueSampling

    X = np.where(np.isfinite(X), X, baseline[None, :]).astype(np.float32)
    inputs = torch.from_numpy(X)
    base = torch.from_numpy(np.broadcast_to(baseline.astype(np.float32), X.shape).copy())
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if differentiable:
            attr = IntegratedGradients(forward).attribute(inputs, baselines=base, n_steps=32)
        else:
            attr = ShapleyValueSampling(forward).attribute(inputs, baselines=base, n_samples=n_samples)
    return attr.detach().numpy()


def plot_importance(table: pd.DataFrame, path: str | Path, top: int = 20) -> None:
    """Horizontal bars of the ``top`` most important features, with their spread over repeats."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(t) + 1.2))
    ax.barh(t["feature"], t["importance_mean"], xerr=t["importance_std"], color="#4c72b0")
    ax.set_xlabel("drop in validation PR-AUC when permuted")
    ax.set_title("Feature importance (permutation)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _functions(
    model: Any, embedding: np.ndarray | None
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[torch.Tensor], torch.Tensor], bool]:
    """Logits of some cells as functions of their feature rows, numpy (importance) and torch (attributions),
    with their image ``embedding`` held fixed for a dual-branch model; and whether they are differentiable."""
    from ..models import LinearModel, TreeEnsemble

    if isinstance(model, TreeEnsemble | LinearModel):

        def fwd_np(X: np.ndarray) -> np.ndarray:
            return model.decision_function(X)

        def fwd_t(t: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(model.decision_function(t.detach().numpy().astype(np.float64))).float()

        return fwd_np, fwd_t, False
    model = model.cpu().eval()
    if embedding is not None:
        emb = torch.from_numpy(embedding)

        def fwd_t(t: torch.Tensor) -> torch.Tensor:
            e = emb if len(t) == len(emb) else emb.repeat(len(t) // len(emb), 1)
            return model.fuse(e, t).reshape(-1)

    else:

        def fwd_t(t: torch.Tensor) -> torch.Tensor:
            return model(t).reshape(-1)

    def fwd_np(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fwd_t(torch.from_numpy(np.asarray(X, np.float32))).numpy()

    return fwd_np, fwd_t, True


def explain_feature_model(
    out: Path,
    model: Any,
    feats: np.ndarray,
    names: list[str],
    labels: np.ndarray,
    val_cells: np.ndarray,
    test_cells: np.ndarray,
    ds: Any,
    *,
    channels: list[str],
    seed: int = 0,
    norm: dict[str, Any] | None = None,
    input_size: int | None = None,
    train_mean: np.ndarray | None = None,
) -> pd.DataFrame:
    """Write importance (validation cells) and attributions (test cells, else validation) into ``out``.

    ``channels``, ``norm`` and ``input_size`` describe the image input of a dual-branch model (its embedding is
    held fixed while the features are attributed); ``train_mean`` is the attribution baseline (default: the mean
    stored in the network's feature scaler).
    """

    def embed(cells: np.ndarray) -> np.ndarray | None:
        return image_embeddings(
            model,
            ds,
            cells,
            channels=channels,
            normalisation=norm or {},
            input_size=input_size or ds.crop_size[0],
            features=feats,
        )

    with torch.no_grad():
        fwd_np, _, _ = _functions(model, embed(val_cells))
        importance = permutation_importance_table(
            fwd_np, feats[val_cells], labels[val_cells].astype(int), names, seed=seed
        )
    atomic_write_text(out / "feature_importance.csv", importance.to_csv(index=False))
    plot_importance(importance, out / "feature_importance.png")

    cells = test_cells if len(test_cells) else val_cells
    if len(cells) > MAX_ATTRIBUTED:
        rng = np.random.default_rng(seed)
        ctc = cells[labels[cells] == 1]
        rest = np.setdiff1d(cells, ctc)
        keep = np.concatenate(
            [
                ctc[: MAX_ATTRIBUTED // 2],
                rng.permutation(rest)[: MAX_ATTRIBUTED - min(len(ctc), MAX_ATTRIBUTED // 2)],
            ]
        )
        cells = np.sort(keep)
    if hasattr(model, "contributions"):  # a linear model: its logit's own terms
        attr = model.contributions(feats[cells])
    else:
        baseline = train_mean if train_mean is not None else _baseline(model, feats)
        _, fwd_t, diff = _functions(model, embed(cells))
        attr = feature_attributions(fwd_t, feats[cells], baseline, differentiable=diff, seed=seed)
    t = ds.table.iloc[cells]
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "cell_id": t["cell_id"].to_numpy(),
                    "sample_id": t["sample_id"].to_numpy(),
                    "label": t["label"].to_numpy(),
                }
            ),
            pd.DataFrame(attr, columns=names),
        ],
        axis=1,
    )
    frame.to_parquet(out / ".feature_attributions.parquet.tmp", index=False)
    (out / ".feature_attributions.parquet.tmp").replace(out / "feature_attributions.parquet")
    return importance


def image_embeddings(
    model: Any,
    ds: Any,
    cells: np.ndarray,
    *,
    channels: list[str],
    normalisation: dict[str, Any],
    input_size: int,
    features: np.ndarray,
) -> np.ndarray | None:
    """The dual-branch image embeddings ``[n, D]`` of ``cells`` (``None`` for a model without image branch)."""
    from ..predict import infer_logits

    if not hasattr(model, "image_embedding"):
        return None
    return infer_logits(
        model,
        ds,
        cells,
        channels=channels,
        normalisation=normalisation,
        input_size=input_size,
        device="cpu",
        features=features,
        call=lambda m, args: m.image_embedding(args[0]),
    )


def cell_attributions(bundle: Any, ds: Any, cells: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Per-cell feature attributions ``[n, F]`` (logit units) of a loaded feature bundle.

    The baseline is the training mean stored in the network (features_mlp, dual_branch), or for trees the
    mean of ``feats`` (the features of the dataset being explained); a logistic regression gives its logit's
    terms, coefficient x standardised value (against its training mean).
    """
    from ..predict.infer import infer_bundle

    if hasattr(bundle.model, "contributions"):
        return bundle.model.contributions(feats[cells])
    emb = None
    if hasattr(bundle.model, "image_embedding"):
        emb = infer_bundle(
            bundle, ds, cells, device="cpu", features=feats, call=lambda m, a: m.image_embedding(a[0])
        )
    _, fwd_t, diff = _functions(bundle.model, emb)
    return feature_attributions(fwd_t, feats[cells], _baseline(bundle.model, feats), differentiable=diff)


def _baseline(model: Any, feats: np.ndarray) -> np.ndarray:
    scaler = getattr(model, "scaler", None)
    if scaler is not None:
        return scaler.mean.detach().cpu().numpy().astype(np.float32)
    mean = np.nanmean(np.where(np.isfinite(feats), feats, np.nan), axis=0)
    return np.where(np.isfinite(mean), mean, 0.0).astype(np.float32)
