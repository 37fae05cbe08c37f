"""Every option of a training run, in one dataclass that maps onto the ``train:`` section of a YAML file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CtcidError

if TYPE_CHECKING:
    from ..augment import AugmentConfig

__all__ = ["FEATURE_MODELS", "GBM_DEFAULTS", "LOSSES", "SAMPLERS", "TrainConfig"]

LOSSES = ("bce", "weighted_bce", "focal")
SAMPLERS = ("shuffle", "balanced")
EXTRA_MODES = ("extra", "substitute")
#: Models that read the hand-crafted feature table (System B).
FEATURE_MODELS = ("features_gbm", "features_mlp", "dual_branch")
GBM_DEFAULTS: dict[str, Any] = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 10,
    "l2_regularization": 1.0,
}


@dataclass
class TrainConfig:
    """Options of ``ctcid train`` / ``cv`` / ``ablate``.

    Attributes
    ----------
    model
        A ctcid model or timm backbone name (``resnet34``, ``resnet50``, ``efficientnet_b4``, ``densenet121``).
    channels
        Input channels at training and test time (System A: ``["BF"]``).
    flatfield_channels
        Channels scaled per crop by their own background (bright field) rather than by dataset-wide
        intensity windows (fluorescence); see :func:`ctcid.train.data.channel_normalisation`.
    train_extra_channels
        Channels added to training only, fed through the single input channel (System A: ``["DAPI"]``).
    extra_mode
        ``extra``: each extra channel adds one sample per training cell with the cell's label;
        ``substitute``: the input channel is replaced by an extra channel with probability ``extra_p``.
    augment
        The ``AugmentConfig`` fields as a mapping (families ``geometric``, ``illumination``, ``noise``, and
        their parameters); ``{}`` uses the defaults, ``{"geometric": false, ...}`` switches families off.
    input_size
        Model input size in px; crops are resampled to it on the device (default: the crop size).
    loss
        ``bce``, ``weighted_bce`` (positive weight = negatives / positives in training) or ``focal``.
    sampler
        ``shuffle`` or ``balanced`` (classes drawn equally often).
    monitor
        Validation metric for early stopping and for picking the best epoch (``val_pr_auc`` or ``val_loss``).
    n_folds, val_fraction
        Patient-grouped K-fold for ``cv``/``ablate``; share of training patients held out for validation.
    n_boot
        Bootstrap resamples (of patients) for confidence intervals.
    device
        ``auto`` (GPU when available), ``cpu`` or ``cuda``.
    precision
        ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``32``, ``bf16-mixed`` or ``16-mixed``.
    devices, strategy, num_nodes
        Passed to the Lightning trainer for multi-GPU / multi-node runs (``strategy="ddp"``).
    workers
        DataLoader worker processes feeding batches from the store (0: in the training process).
    backbone
        CNN branch of ``dual_branch`` (any timm backbone).
    fusion
        How ``dual_branch`` joins its branches: ``concat`` or ``gated``.
    pca_components
        Reduce the standardised feature vector to this many principal components, fitted on the
        training fold only (0: no reduction). For ``features_mlp`` and ``dual_branch``.
    feature_hidden
        Width of the feature MLP.
    gbm
        Options of ``features_gbm`` (scikit-learn ``HistGradientBoostingClassifier``): ``max_iter`` (300),
        ``learning_rate`` (0.05), ``max_leaf_nodes`` (15), ``min_samples_leaf`` (10),
        ``l2_regularization`` (1.0). The number of trees kept is the one best on the validation patients.
    segmentation, features
        Options of the segmentation (:class:`ctcid.segment.SegmentConfig`) and of the feature measures
        (:class:`ctcid.features.FeatureConfig`) that feature models read; ``{}`` uses the defaults.
    """

    model: str = "resnet34"
    channels: list[str] = field(default_factory=lambda: ["BF"])
    flatfield_channels: list[str] = field(default_factory=lambda: ["BF"])
    train_extra_channels: list[str] = field(default_factory=list)
    extra_mode: str = "extra"
    extra_p: float = 0.5
    augment: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    pretrained: bool = False
    weights: str | None = None
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "weighted_bce"
    focal_gamma: float = 2.0
    sampler: str = "shuffle"
    monitor: str = "val_pr_auc"
    patience: int = 6
    n_folds: int = 5
    val_fraction: float = 0.2
    n_boot: int = 1000
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    workers: int = 0
    compile: bool = False
    progress: bool = True
    backbone: str = "resnet18"
    fusion: str = "concat"
    pca_components: int = 0
    feature_hidden: int = 128
    gbm: dict[str, Any] = field(default_factory=dict)
    segmentation: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.channels:
            raise CtcidError("--channels needs at least one channel")
        if self.train_extra_channels and len(self.channels) != 1:
            raise CtcidError(
                "--train-extra-channels feeds extra channels through the single input channel; "
                "use it with one --channels entry (e.g. BF)"
            )
        overlap = set(self.train_extra_channels) & set(self.channels)
        if overlap:
            raise CtcidError(f"channel(s) {', '.join(sorted(overlap))} are both input and training-only channels")
        if self.extra_mode not in EXTRA_MODES:
            raise CtcidError(f"--extra-mode must be one of {', '.join(EXTRA_MODES)}, got {self.extra_mode!r}")
        if not 0.0 <= self.extra_p <= 1.0:
            raise CtcidError(f"--extra-p must be in [0, 1], got {self.extra_p}")
        if self.loss not in LOSSES:
            raise CtcidError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.sampler not in SAMPLERS:
            raise CtcidError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.monitor not in ("val_pr_auc", "val_loss"):
            raise CtcidError(f"--monitor must be val_pr_auc or val_loss, got {self.monitor!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise CtcidError("epochs >= 1, batch size >= 2 and a positive learning rate are needed")
        if self.n_folds < 2:
            raise CtcidError(f"--folds must be >= 2, got {self.n_folds}")
        if not 0.0 < self.val_fraction < 0.5:
            raise CtcidError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.input_size is not None and not 16 <= self.input_size <= 1024:
            raise CtcidError(f"--input-size must be between 16 and 1024 px, got {self.input_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise CtcidError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "32", "32-true", "bf16-mixed", "16-mixed"):
            raise CtcidError(f"--precision must be auto, 32, bf16-mixed or 16-mixed, got {self.precision!r}")
        self.augment_config().validate()
        if self.fusion not in ("concat", "gated"):
            raise CtcidError(f"--fusion must be concat or gated, got {self.fusion!r}")
        if self.pca_components < 0 or self.feature_hidden < 1:
            raise CtcidError("--pca-components must be >= 0 and the feature MLP width >= 1")
        unknown = set(self.gbm) - set(GBM_DEFAULTS)
        if unknown:
            raise CtcidError(
                f"unknown gbm option(s) {', '.join(sorted(unknown))}; known: {', '.join(GBM_DEFAULTS)}"
            )
        self.segment_config().validate()
        self.feature_config().validate()

    def segment_config(self) -> Any:
        from ..segment import SegmentConfig

        try:
            return SegmentConfig(**self.segmentation)
        except TypeError as exc:
            raise CtcidError(f"bad segmentation option: {exc}") from None

    def feature_config(self) -> Any:
        from ..features import FeatureConfig

        try:
            return FeatureConfig(**self.features)
        except TypeError as exc:
            raise CtcidError(f"bad features option: {exc}") from None

    def augment_config(self) -> AugmentConfig:
        from ..augment import AugmentConfig

        try:
            return AugmentConfig(**self.augment)
        except TypeError as exc:
            raise CtcidError(f"bad augment option: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
