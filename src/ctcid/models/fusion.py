"""System B's models on hand-crafted features: a feature MLP and the dual-branch CNN + features network.

Both standardise the feature vector inside the model (training-fold mean and spread, then an optional
PCA fitted on the training fold), so the bundle's weights carry everything needed to apply them and a
missing measure (NaN, e.g. no nucleus found) becomes the training mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .registry import register_model

__all__ = ["DualBranch", "FeatureMLP", "FeatureScaler"]

#: Standardised features are clipped to this many standard deviations.
CLIP_SD = 8.0


class FeatureScaler(nn.Module):
    """``(x - mean) / std``, NaN -> 0, clipped, then an optional projection on ``components`` (PCA)."""

    def __init__(self, n_features: int, pca_components: int = 0):
        super().__init__()
        self.n_features = n_features
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        k = pca_components
        self.register_buffer("components", torch.eye(n_features) if k == 0 else torch.zeros(k, n_features))
        self.out_features = n_features if k == 0 else k

    @torch.no_grad()
    def fit(self, X: np.ndarray) -> FeatureScaler:
        """Fit on training rows only (``X [n, n_features]``, NaN allowed)."""
        X = np.asarray(X, np.float64)
        mean = np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        sd = np.nanstd(np.where(np.isfinite(X), X, np.nan), axis=0)
        sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(sd, dtype=torch.float32))
        if self.out_features != self.n_features:
            from sklearn.decomposition import PCA

            z = self.standardise(torch.as_tensor(X, dtype=torch.float32)).numpy()
            pca = PCA(n_components=self.out_features, random_state=0).fit(z)
            self.components.copy_(torch.as_tensor(pca.components_, dtype=torch.float32))
        return self

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.float() - self.mean) / self.scale
        return torch.nan_to_num(z, nan=0.0, posinf=CLIP_SD, neginf=-CLIP_SD).clamp(-CLIP_SD, CLIP_SD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.standardise(x)
        return z if self.out_features == self.n_features else z @ self.components.T


def _mlp(n_in: int, hidden: int, n_out: int, drop: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, n_out)
    )


class FeatureMLP(nn.Module):
    """Features only: scaler, then a two-layer MLP to one logit."""

    inputs = ("features",)

    def __init__(
        self, n_features: int, num_classes: int = 1, pca_components: int = 0, hidden: int = 128, drop: float = 0.2
    ):
        super().__init__()
        self.scaler = FeatureScaler(n_features, pca_components)
        self.net = nn.Sequential(
            _mlp(self.scaler.out_features, hidden, hidden, drop), nn.GELU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(self.scaler(f))


class DualBranch(nn.Module):
    """A timm CNN on the image channels and an MLP on the features, fused by concatenation or a gate.

    ``concat``: ``head([cnn(x), mlp(f)])``. ``gated``: both branches are projected to one width and mixed
    per dimension by ``g = sigmoid(W [cnn(x), mlp(f)])``, ``g * img + (1 - g) * feat``, then the head; the gate
    lets the network lean on whichever branch is reliable for a given cell.
    """

    inputs = ("image", "features")

    def __init__(
        self,
        n_features: int,
        in_chans: int = 1,
        num_classes: int = 1,
        backbone: str = "resnet18",
        fusion: str = "concat",
        pca_components: int = 0,
        hidden: int = 128,
        drop: float = 0.2,
        pretrained: bool = False,
    ):
        super().__init__()
        import timm

        if fusion not in ("concat", "gated"):
            raise ValueError(f"fusion must be concat or gated, got {fusion!r}")
        self.fusion = fusion
        self.cnn = timm.create_model(backbone, pretrained=pretrained, in_chans=in_chans, num_classes=0)
        width = self.cnn.num_features
        self.scaler = FeatureScaler(n_features, pca_components)
        self.feat = _mlp(self.scaler.out_features, hidden, hidden, drop)
        if fusion == "concat":
            self.head = nn.Sequential(
                nn.Linear(width + hidden, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, num_classes)
            )
        else:
            self.img_proj = nn.Linear(width, hidden)
            self.gate = nn.Linear(width + hidden, hidden)
            self.head = nn.Sequential(nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, num_classes))

    def image_embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(x)

    def fuse(self, h_img: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Logits from a precomputed image embedding and raw features (used for attributions)."""
        h_feat = self.feat(self.scaler(f))
        h_img = h_img.float()
        if self.fusion == "concat":
            return self.head(torch.cat([h_img, h_feat], dim=1))
        g = torch.sigmoid(self.gate(torch.cat([h_img, h_feat], dim=1)))
        return self.head(g * self.img_proj(h_img) + (1 - g) * h_feat)

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.image_embedding(x), f)


@register_model("features_mlp")
def _features_mlp(*, in_chans: int = 0, num_classes: int = 1, pretrained: bool = False, **kw: Any) -> nn.Module:
    if "n_features" not in kw:
        raise ValueError("features_mlp needs n_features")
    return FeatureMLP(num_classes=num_classes, **kw)


@register_model("dual_branch")
def _dual_branch(*, in_chans: int = 1, num_classes: int = 1, pretrained: bool = False, **kw: Any) -> nn.Module:
    if "n_features" not in kw:
        raise ValueError("dual_branch needs n_features")
    return DualBranch(in_chans=in_chans, num_classes=num_classes, pretrained=pretrained, **kw)


def model_inputs(model: Any) -> tuple[str, ...]:
    """What a model reads: ``("image",)`` for a plain CNN, ``("features",)``, or both."""
    return tuple(getattr(model, "inputs", ("image",)))
