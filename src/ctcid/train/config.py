"""Every option of a training run, in one dataclass that maps onto the ``train:`` section of a YAML file.

Nested sections are typed too: ``augment`` (:class:`ctcid.augment.AugmentConfig`), ``gbm`` (:class:`GBMConfig`),
``segmentation`` (:class:`ctcid.segment.SegmentConfig`) and ``features`` (:class:`ctcid.features.FeatureConfig`);
in YAML each is a mapping of some of its fields (``augment: {rotate_deg: 90}``).

Examples
--------
>>> cfg = TrainConfig.from_dict({"model": "features_gbm", "gbm": {"max_iter": 50}})
>>> cfg.gbm.max_iter, cfg.gbm.learning_rate
(50, 0.05)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..augment import AugmentConfig
from ..config import ConfigError, Options, option
from ..features import FeatureConfig
from ..segment import SegmentConfig

__all__ = [
    "EXTRA_LOOKS",
    "EXTRA_MODES",
    "FEATURE_MODELS",
    "LOSSES",
    "SAMPLERS",
    "SMALL_STUDY_CELLS",
    "GBMConfig",
    "LogRegConfig",
    "TrainConfig",
    "auto_min_samples_leaf",
]

LOSSES = ("bce", "weighted_bce", "focal")
SAMPLERS = ("shuffle", "balanced")
EXTRA_MODES = ("extra", "substitute")
EXTRA_LOOKS = ("own", "stand-in")
#: Models that read the hand-crafted feature table (System B).
FEATURE_MODELS = ("features_logreg", "features_gbm", "features_mlp", "dual_branch")
#: Fewer labelled cells than this make a small study: ``train`` and ``cv`` print what works there.
SMALL_STUDY_CELLS = 300


def auto_min_samples_leaf(n_train: int) -> int:
    """The trees' ``min_samples_leaf`` for ``n_train`` training cells: a twentieth of them, between 2 and 10, so
    that tens of cells can still be split and large sets keep leaves of 10.

    >>> auto_min_samples_leaf(20), auto_min_samples_leaf(120), auto_min_samples_leaf(5000)
    (2, 6, 10)
    """
    return int(min(10, max(2, n_train // 20)))


@dataclass
class GBMConfig(Options):
    """Options of ``features_gbm`` (scikit-learn's ``HistGradientBoostingClassifier``). The number of trees kept
    is the one best on the validation patients."""

    max_iter: int = option(300, help="Boosting rounds grown (at most).", ge=1)
    learning_rate: float = option(0.05, help="Shrinkage of each tree.", gt=0)
    max_leaf_nodes: int = option(15, help="Leaves per tree.", ge=2)
    min_samples_leaf: int | None = option(
        None,
        help="Fewest training cells in a leaf (default: a twentieth of the training cells, between 2 and 10).",
        ge=1,
    )
    l2_regularization: float = option(1.0, help="L2 penalty on the leaf values.", ge=0)


@dataclass
class LogRegConfig(Options):
    """Options of ``features_logreg`` (scikit-learn's ``LogisticRegression`` on the standardised feature table).
    The regularisation strength is the one best on the validation patients, or, when they hold fewer than
    ``min_val_ctc`` CTCs or WBCs, by patient-grouped cross-validation inside the training cells."""

    c_grid: list[float] = option(
        default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        help="Inverse regularisation strengths C tried, weakest penalty last (ties go to the smaller C).",
    )
    min_val_ctc: int = option(
        5, help="Fewest validation CTCs (and WBCs) for choosing C on the validation patients.", ge=1
    )
    inner_folds: int = option(5, help="Most patient-grouped inner folds when C is chosen inside training.", ge=2)
    clip: float = option(5.0, help="Standardised values are clipped to +-clip (outliers of small sets).", gt=0)
    max_iter: int = option(5000, help="Solver iterations (at most).", ge=10)

    def __check__(self) -> None:
        if not self.c_grid or any(not c > 0 for c in self.c_grid):
            raise ConfigError("c_grid", "needs at least one C, every C > 0")


@dataclass
class TrainConfig(Options):
    """Options of ``ctcid train`` / ``cv`` / ``ablate``."""

    model: str = option(
        "resnet34",
        help="Model: a timm backbone (resnet34, resnet50, efficientnet_b4, densenet121, ...) or a ctcid model "
        "(features_logreg, features_gbm, features_mlp, dual_branch).",
    )
    channels: list[str] = option(
        default_factory=lambda: ["BF"],
        help="Input channels at training and test time, e.g. BF or BF,DAPI,CK,CD45.",
    )
    flatfield_channels: list[str] = option(
        default_factory=lambda: ["BF"],
        help="Channels scaled per crop by their own background (bright field) rather than by dataset-wide "
        "intensity windows (fluorescence).",
    )
    train_extra_channels: list[str] = option(
        default_factory=list,
        help="Channels added to training only, through the single input channel (System A: DAPI).",
    )
    extra_mode: str = option(
        "extra",
        help="extra: each extra channel adds one sample per training cell with the cell's label; substitute: the "
        "input is replaced by an extra channel with probability --extra-p.",
        choices=EXTRA_MODES,
    )
    extra_p: float = option(0.5, help="Substitution probability of --extra-mode substitute.", ge=0, le=1)
    extra_look: str = option(
        "stand-in",
        help="How an extra training channel is shown: stand-in: rescaled to look like the input channel it stands "
        "in for (fluorescence inverted onto bright field's background and contrast, measured on the training "
        "cells, so a DAPI nucleus shows as bright field's dark nucleus); own: its own intensity window.",
        choices=EXTRA_LOOKS,
    )
    augment: AugmentConfig = option(
        default_factory=AugmentConfig,
        help="Augmentation: the families (geometric, illumination, noise) and their parameters.",
        cli=False,
    )
    augment_strength: str = option(
        "data",
        help="data: the strength of each augmentation family set from the variation the training patients show "
        "(recorded in augment.json); fixed: the augment section as given.",
        choices=("data", "fixed"),
    )
    input_size: int | None = option(
        None,
        help="Model input size in px (default: the crop size); crops are resampled on the device.",
        ge=16,
        le=1024,
    )
    pretrained: bool = option(
        False, help="Start from timm's ImageNet weights (needs the network).", flag="--pretrained/--scratch"
    )
    weights: str | None = option(None, help="Local safetensors weights to start from.")
    epochs: int = option(30, help="Maximum epochs.", ge=1)
    max_steps: int | None = option(
        None,
        help="Optimiser steps to train for, instead of --epochs (ablations give every variant the same).",
        ge=1,
    )
    batch_size: int = option(128, help="Batch size.", ge=2)
    lr: float = option(1e-3, help="Peak learning rate (one-cycle, AdamW).", gt=0)
    weight_decay: float = option(1e-4, help="AdamW weight decay.", ge=0)
    loss: str = option(
        "weighted_bce",
        help="bce, weighted_bce (CTCs weighted by negatives / positives in training) or focal.",
        choices=LOSSES,
    )
    focal_gamma: float = option(2.0, help="Focusing exponent of the focal loss.", ge=0, cli=False)
    sampler: str = option("shuffle", help="shuffle, or balanced (classes drawn equally often).", choices=SAMPLERS)
    calibration: str = option(
        "platt",
        help="How raw logits become probabilities, fitted on the validation patients after the class weighting's "
        "logit shift is undone: platt (slope and intercept, with their uncertainty) or isotonic.",
        choices=("platt", "isotonic"),
    )
    threshold_rule: str = option(
        "max-f1",
        help="How the decision threshold is chosen on the calibrated validation probabilities: max-f1 (the score "
        "that maximises F1 on the validation cells) or half-max-f1 (half that best F1: optimal for calibrated "
        "probabilities, steadier with few validation CTCs and a higher F1 on new patients in most runs, but a "
        "noisier adjusted count; see the README).",
        choices=("max-f1", "half-max-f1"),
    )
    monitor: str = option(
        "val_pr_auc",
        help="Validation metric for early stopping and the best epoch.",
        choices=("val_pr_auc", "val_loss"),
    )
    patience: int = option(6, help="Early-stopping patience in epochs.", ge=1)
    n_folds: int = option(5, help="Patient-grouped folds of cv and ablate.", ge=2, flag="--folds")
    val_fraction: float = option(0.2, help="Share of the training patients held out for validation.", gt=0, lt=0.5)
    n_boot: int = option(1000, help="Bootstrap resamples for confidence intervals.", ge=0)
    seed: int = option(0, help="Random seed.", ge=0)
    device: str = option(
        "auto", help="auto (a GPU when there is one), cpu or cuda.", choices=("auto", "cpu", "cuda")
    )
    precision: str = option(
        "auto",
        help="auto (bf16 autocast on GPU, fp32 on CPU), 32, bf16-mixed or 16-mixed.",
        choices=("auto", "32", "32-true", "bf16-mixed", "16-mixed"),
    )
    devices: int | str = option(1, help="Devices per node for data-parallel runs.")
    strategy: str = option("auto", help="Lightning strategy for several devices, e.g. ddp.")
    num_nodes: int = option(1, help="Nodes for multi-node runs.", ge=1)
    workers: int = option(0, help="Batch loader processes (0: in the training process).", ge=0)
    compile: bool = option(False, help="torch.compile the model.", cli=False)
    progress: bool = option(True, help="Show progress bars.", flag="--progress/--no-progress")
    backbone: str = option("resnet18", help="CNN branch of dual_branch (any timm backbone).")
    fusion: str = option(
        "concat", help="How dual_branch joins its branches: concat or gated.", choices=("concat", "gated")
    )
    pca_components: int = option(
        0,
        help="Reduce the standardised features to this many principal components, fitted on the training "
        "fold (0: no reduction; features_mlp and dual_branch).",
        ge=0,
    )
    feature_hidden: int = option(128, help="Width of the feature MLP.", ge=1, cli=False)
    samples_unknown: bool = option(
        False,
        help="The cells' patients are unknown: each cell is its own group in the splits (patients unknown: "
        "metrics may be optimistic, and every output says so).",
    )
    l1_ratio: float = option(
        0.0,
        help="features_logreg: elastic-net mixing, 0 = L2 (ridge), 1 = L1 (lasso), between = both.",
        ge=0,
        le=1,
    )
    logreg: LogRegConfig = option(default_factory=LogRegConfig, help="Options of features_logreg.", cli=False)
    gbm: GBMConfig = option(default_factory=GBMConfig, help="Options of features_gbm.", cli=False)
    segmentation: SegmentConfig = option(
        default_factory=SegmentConfig, help="Segmentation that feature models read.", cli=False
    )
    features: FeatureConfig = option(
        default_factory=FeatureConfig, help="Feature measures that feature models read.", cli=False
    )

    def __check__(self) -> None:
        if not self.channels:
            raise ConfigError("channels", "needs at least one channel", "--channels")
        if self.train_extra_channels and len(self.channels) != 1:
            raise ConfigError(
                "train_extra_channels",
                "feeds extra channels through the single input channel; use it with one channel (e.g. BF)",
                "--train-extra-channels",
            )
        overlap = set(self.train_extra_channels) & set(self.channels)
        if overlap:
            raise ConfigError(
                "train_extra_channels",
                f"names {', '.join(sorted(overlap))}, already an input channel",
                "--train-extra-channels",
            )
