"""The model bundle: safetensors weights plus one JSON that says how to use them.

A bundle folder holds ``model.safetensors`` and ``model.json``. The JSON carries everything
needed to apply the weights to new data and get the same answer: architecture and its
arguments, channels in order, per-channel normalisation, crop, input and pixel size, classes,
decision threshold, the calibration map (:class:`ctcid.models.Calibration`), the training data's
fingerprint, package versions and the sha256 of the weights. Bundles of format 1 (a temperature instead of
a calibration map) are read too. Loading never unpickles, checks the sha256, and a bundle that does not
match a dataset (channels, crop size, pixel size) is refused with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Options, from_dict, option
from ..config import validate as validate_fields
from ..errors import CtcidError, arg
from ..features import FeatureConfig
from ..io._atomic import atomic_dir
from ..io._json import read_versioned_json
from ..segment import SegmentConfig
from .calibration import Calibration

__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "BundleMeta",
    "FeatureInputs",
    "TrainingRecord",
    "check_compatible",
    "load_bundle",
    "save_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT = "ctcid-model"
#: Format 2: a ``calibration`` section replaces format 1's ``temperature``.
BUNDLE_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
#: Relative pixel-size difference above which a dataset is refused.
PIXEL_SIZE_TOLERANCE = 0.10


@dataclass
class FeatureInputs(Options):
    """The feature inputs of a feature model: the columns it reads and the options that measured them."""

    names: list[str] = option(default_factory=list, help="Feature columns, in the order the model reads them.")
    segmentation: SegmentConfig = option(default_factory=SegmentConfig, help="Segmentation options.", cli=False)
    config: FeatureConfig = option(default_factory=FeatureConfig, help="Feature measure options.", cli=False)


@dataclass
class TrainingRecord(Options):
    """What a bundle records of its training: the data, the patients on each side, epochs and options."""

    dataset_fingerprint: str = option("", help="Content fingerprint of the training dataset.")
    dataset: str = option("", help="Path of the training dataset.")
    ingest: dict[str, Any] = option(default_factory=dict, help="Options the training data was ingested with.")
    train_cells: int = option(0, help="Training cells.")
    val_cells: int = option(0, help="Validation cells.")
    train_samples: list[str] = option(default_factory=list, help="Training patients.")
    val_samples: list[str] = option(default_factory=list, help="Validation patients.")
    best_epoch: int | None = option(None, help="Epoch whose weights were kept.")
    epochs_run: int = option(0, help="Epochs trained.")
    config: dict[str, Any] = option(default_factory=dict, help="Every training option, resolved.")


@dataclass
class BundleMeta:
    """What ``model.json`` holds (see the module docstring)."""

    architecture: str
    channels: list[str]
    normalisation: dict[str, dict[str, float | str]]
    crop_size: list[int]
    input_size: int
    pixel_size_um: float
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=lambda: ["image"])
    features: FeatureInputs | None = None
    classes: list[str] = field(default_factory=lambda: ["wbc", "ctc"])
    positive_class: str = "ctc"
    threshold: float = 0.5
    calibration: Calibration = field(default_factory=Calibration)
    training: TrainingRecord = field(default_factory=TrainingRecord)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    model_id: str = ""
    weights_sha256: str = ""
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default) + "\n"

    def calibration_map(self) -> Calibration:
        """The map from raw logits to calibrated probabilities (identity when none was fitted)."""
        return self.calibration

    def probabilities(self, raw_logits: Any) -> np.ndarray:
        """Calibrated CTC probabilities of raw logits (what ``p_ctc`` holds)."""
        return self.calibration_map().probabilities(raw_logits)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@dataclass
class Bundle:
    """A loaded bundle: the model (a torch module in eval mode, a :class:`TreeEnsemble` or a :class:`LinearModel`)
    and its metadata."""

    model: Any
    meta: BundleMeta
    path: Path

    @property
    def model_id(self) -> str:
        return self.meta.model_id


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(
    out: str | os.PathLike[str], model: nn.Module | Any, meta: BundleMeta, *, overwrite: bool = False
) -> Path:
    """Write a bundle folder atomically; fills in ``weights_sha256``, ``model_id``, ``created`` and versions."""
    from safetensors.torch import save_file

    from ..io.store import package_versions
    from .gbm import TreeEnsemble
    from .linear import LinearModel

    with atomic_dir(out, overwrite) as tmp:
        info = {"format": BUNDLE_FORMAT, "architecture": meta.architecture}
        if isinstance(model, TreeEnsemble | LinearModel):
            from safetensors.numpy import save_file as save_arrays

            save_arrays(model.state_dict(), str(tmp / WEIGHTS_FILE), metadata=info)
        else:
            state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata=info)
        meta.weights_sha256 = _sha256(tmp / WEIGHTS_FILE)
        meta.model_id = meta.model_id or f"{meta.architecture}-{meta.weights_sha256[:12]}"
        meta.created = meta.created or datetime.now(UTC).isoformat(timespec="seconds")
        meta.versions = meta.versions or package_versions()
        (tmp / META_FILE).write_text(meta.to_json(), encoding="utf-8")
    return Path(out)


def read_meta(path: str | os.PathLike[str]) -> BundleMeta:
    """Read and check ``model.json`` of a bundle folder (no weights loaded)."""
    path = Path(path)
    if path.is_file() and path.name == META_FILE:
        path = path.parent
    meta_file = path / META_FILE
    if not path.is_dir():
        raise CtcidError("no such model bundle folder", path)
    if not meta_file.is_file():
        raise CtcidError(f"not a model bundle: {META_FILE} is missing", path)
    raw = read_versioned_json(meta_file, BUNDLE_FORMAT, BUNDLE_VERSION, "bundle metadata")
    if int(raw.get("format_version", 1)) < 2:  # format 1: p = sigmoid(logit / temperature)
        raw["calibration"] = Calibration.from_temperature(float(raw.pop("temperature", 1.0))).to_dict()
    if not raw.get("features"):  # image models wrote an empty mapping
        raw["features"] = None
    try:
        meta = from_dict(BundleMeta, raw, strict=False)
        validate_fields(meta)
    except TypeError as exc:
        raise CtcidError(f"bundle metadata lacks a field ({exc})", meta_file) from None
    except CtcidError as exc:
        raise CtcidError(f"bundle metadata: {exc}", meta_file) from None
    if not meta.channels or ("image" in meta.inputs and set(meta.channels) - set(meta.normalisation)):
        raise CtcidError("bundle metadata: every channel needs a normalisation entry", meta_file)
    if "features" in meta.inputs and (meta.features is None or not meta.features.names):
        raise CtcidError("bundle metadata: a feature model needs its feature names", meta_file)
    return meta


def verify_bundle(path: str | os.PathLike[str]) -> BundleMeta:
    """Check a bundle's metadata and that its weights match the recorded sha256; returns the metadata."""
    path = Path(path)
    meta = read_meta(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CtcidError(f"{WEIGHTS_FILE} is missing from the bundle", path)
    if _sha256(weights) != meta.weights_sha256:
        raise CtcidError(
            "weights do not match the sha256 recorded in model.json (the file was changed or damaged)", weights
        )
    return meta


def load_bundle(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle: check its metadata and the weights' sha256, build the model, load the weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .registry import create_model

    path = Path(path)
    meta = verify_bundle(path)
    weights = path / WEIGHTS_FILE
    if meta.architecture == "features_gbm":
        from .gbm import TreeEnsemble

        return Bundle(_load_feature_model(TreeEnsemble, "tree arrays", weights, meta), meta, path)
    if meta.architecture == "features_logreg":
        from .linear import LinearModel

        return Bundle(_load_feature_model(LinearModel, "linear model arrays", weights, meta), meta, path)
    model = create_model(meta.architecture, in_chans=len(meta.channels), **meta.model_kwargs)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise CtcidError(f"weights do not fit {meta.architecture} ({str(exc).splitlines()[0]})", weights) from None
    model.eval().to(device)
    return Bundle(model, meta, path)


def _load_feature_model(cls: Any, what: str, weights: Path, meta: BundleMeta) -> Any:
    """The feature model (:class:`~ctcid.models.TreeEnsemble` or :class:`~ctcid.models.LinearModel`, ``cls``) of
    a bundle, read from its arrays (``what`` in messages) and checked against its metadata."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_arrays

    try:
        model = cls.from_state_dict(load_arrays(str(weights)))
    except (SafetensorError, ValueError, OSError) as exc:
        raise CtcidError(f"{what} cannot be read ({exc})", weights) from None
    if meta.features is None or model.n_features != len(meta.features.names):
        raise CtcidError(f"{what} and model.json disagree on the number of features", weights)
    return model


def check_compatible(meta: BundleMeta, dataset: Any) -> None:
    """Refuse a dataset the bundle was not made for: missing channels, other crop size, pixel size far off."""
    missing = [c for c in meta.channels if c not in dataset.channels]
    where = getattr(dataset, "path", None)
    if missing:
        raise CtcidError(
            f"the model needs channel(s) {', '.join(missing)} but the dataset has "
            f"{', '.join(dataset.channels)}; re-ingest with a {arg('channel_map', ...)} that names them",
            where,
        )
    crop = list(dataset.crop_size)
    if crop != list(meta.crop_size):
        raise CtcidError(
            f"the model was trained on {meta.crop_size[0]}x{meta.crop_size[1]} px crops but the dataset "
            f"has {crop[0]}x{crop[1]}; re-ingest with {arg('size', meta.crop_size[0])}",
            where,
        )
    ratio = dataset.pixel_size_um / meta.pixel_size_um
    if abs(ratio - 1.0) > PIXEL_SIZE_TOLERANCE:
        raise CtcidError(
            f"the model was trained at {meta.pixel_size_um} um/px but the dataset is at "
            f"{dataset.pixel_size_um} um/px; re-ingest with {arg('fit', 'resize')} at a matching scale",
            where,
        )
