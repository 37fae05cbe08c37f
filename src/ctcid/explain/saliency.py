"""Saliency maps of image models (CNN and dual branch), with captum, for the CTC logit.

Methods (``--method``):

``gradcam``
    captum ``LayerGradCam`` at a layer chosen for the input size (``--layer auto``: the last stage whose grid is at
    least 8 x 8, e.g. ``layer2`` of a ResNet at 64 px: 8 x 8), upsampled bilinearly to the crop.
``integrated_gradients``
    captum ``IntegratedGradients`` from a blank image (0 after standardisation: every channel at its mean), 32
    steps, summed over the channels: pixel level.
``occlusion``
    captum ``Occlusion``: the drop of the logit when a square of an eighth of the input (all channels) is set to
    the blank value, sliding by half its side.
``guided_gradcam`` (the default)
    captum ``GuidedGradCam``: guided backpropagation times the Grad-CAM map of the same layer.

Every method gives a signed map per cell (positive: evidence for "CTC") at crop size. The saliency shown is its
positive part divided by its 99th percentile and clipped to [0, 1], so the map's contrast survives (a per-cell
maximum would let one hot pixel darken the rest; a min-max with a floor would tint the whole crop).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "MIN_GRID",
    "attribute_images",
    "bundle_maps",
    "choose_layer",
    "image_backbone",
    "layer_grids",
    "normalise_maps",
    "randomised_model",
    "saliency_maps",
    "to_crop",
]

#: Methods of ``ctcid explain --method``.
METHODS = ("gradcam", "integrated_gradients", "occlusion", "guided_gradcam")
#: The method the report and ``ctcid explain`` use unless told otherwise: the one ``ctcid bench saliency`` picks
#: (:func:`ctcid.bench.saliency.choose_default`; ``benchmarks/results/saliency_cpu-2core.md``).
DEFAULT_METHOD = "guided_gradcam"
#: Smallest grid (cells on a side) a Grad-CAM layer may have when chosen automatically.
MIN_GRID = 8
#: Percentile of a map's positive part that becomes 1 in the saliency shown.
PERCENTILE = 99.0
_IG_STEPS = 32


class _Logit(nn.Module):
    """The CTC logit as a ``[n, 1]`` output, for captum (a module, so guided backpropagation sees its ReLUs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        return self.model(x, *more).reshape(-1, 1)


def image_backbone(model: nn.Module) -> tuple[nn.Module, str]:
    """The image network of a model (the CNN branch of a dual-branch model) and its name's prefix."""
    return (model.cnn, "cnn.") if isinstance(getattr(model, "cnn", None), nn.Module) else (model, "")


def layer_grids(model: nn.Module, input_size: int, in_chans: int) -> list[tuple[str, tuple[int, int]]]:
    """Candidate Grad-CAM layers of ``model`` (names in ``model``) with the grid of their output at
    ``input_size``, in forward order: the stages timm lists in ``feature_info``, else every 2-D convolution.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1))
    >>> layer_grids(net, 32, 1)
    [('0', (32, 32)), ('1', (16, 16))]
    """
    backbone, prefix = image_backbone(model)
    info = getattr(backbone, "feature_info", None)
    names = [str(i["module"]) for i in info] if isinstance(info, list) and info else []
    if not names:
        names = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ValueError("the model has no 2-D convolution")
    grids: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            grids.setdefault(name, tuple(out.shape[-2:]))

        return hook

    hooks = [backbone.get_submodule(n).register_forward_hook(record(n)) for n in names]
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, in_chans, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    return [(prefix + n, grids[n]) for n in names if n in grids]


def choose_layer(model: nn.Module, input_size: int, in_chans: int, min_grid: int = MIN_GRID) -> str:
    """The Grad-CAM layer for ``input_size``: the last candidate (:func:`layer_grids`) whose grid is at least
    ``min_grid`` on both sides, else the one with the finest grid.

    Examples
    --------
    >>> import timm
    >>> net = timm.create_model("resnet18", in_chans=1, num_classes=1)
    >>> choose_layer(net, 64, 1), choose_layer(net, 224, 1)
    ('layer2', 'layer3')
    """
    grids = layer_grids(model, input_size, in_chans)
    fine = [name for name, g in grids if min(g) >= min_grid]
    return fine[-1] if fine else max(grids, key=lambda ng: min(ng[1]))[0]


def _without_inplace(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose activations do not work in place (captum's backward hooks need that)."""
    model = copy.deepcopy(model).cpu().eval()
    for m in model.modules():
        if hasattr(m, "inplace") and isinstance(m.inplace, bool):
            m.inplace = False
    return model


def attribute_images(
    model: nn.Module,
    images: np.ndarray,
    method: str,
    *,
    layer: str = "auto",
    extra: tuple[np.ndarray, ...] = (),
    batch_size: int = 32,
) -> tuple[np.ndarray, str | None]:
    """Signed attribution maps ``[n, h, w]`` (input size) of the logit of ``model`` for prepared ``images``
    ``[n, C, h, w]`` (the network's input), and the layer used (``None`` for layer-free methods).

    ``extra`` holds further network inputs, held fixed (the features of a dual-branch model); ``layer`` is a
    module name of ``model`` or ``auto`` (:func:`choose_layer`).
    """
    from captum.attr import GuidedGradCam, IntegratedGradients, LayerGradCam, Occlusion

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    n, c, h, w = images.shape
    net = _Logit(_without_inplace(model))
    name = None
    if method in ("gradcam", "guided_gradcam"):
        name = choose_layer(net.model, h, c) if layer == "auto" else layer
        module = net.model.get_submodule(name)
    out = np.zeros((n, h, w), np.float32)
    k = max(2, h // 8)
    for lo in range(0, n, batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch_size], np.float32)).requires_grad_(True)
        more = tuple(torch.from_numpy(np.ascontiguousarray(e[lo : lo + batch_size], np.float32)) for e in extra)
        args = more or None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "gradcam":
                cam = LayerGradCam(net, module).attribute(x, target=0, additional_forward_args=args)
                a = F.interpolate(cam.detach(), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            elif method == "guided_gradcam":
                a = GuidedGradCam(net, module).attribute(
                    x, target=0, additional_forward_args=args, interpolate_mode="bilinear"
                )
                a = a.detach().sum(dim=1)
            elif method == "integrated_gradients":
                a = IntegratedGradients(net).attribute(
                    x, baselines=0.0, target=0, additional_forward_args=args, n_steps=_IG_STEPS
                )
                a = a.detach().sum(dim=1)
            else:
                a = Occlusion(net).attribute(
                    x,
                    sliding_window_shapes=(c, k, k),
                    strides=(c, max(1, k // 2), max(1, k // 2)),
                    baselines=0.0,
                    target=0,
                    additional_forward_args=args,
                    perturbations_per_eval=8,
                )
                a = a.detach().mean(dim=1)
        out[lo : lo + len(a)] = a.float().numpy()
    return out, name


def to_crop(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Maps ``[n, h, w]`` resampled (bilinear) to the crop ``size`` (the network saw the crop resized)."""
    if maps.shape[1:] == tuple(size):
        return maps.astype(np.float32)
    t = F.interpolate(torch.from_numpy(maps[:, None].astype(np.float32)), size=tuple(size), mode="bilinear")
    return t[:, 0].numpy()


def normalise_maps(maps: np.ndarray, percentile: float = PERCENTILE) -> np.ndarray:
    """The saliency shown: each map's positive part over its ``percentile``-th percentile, clipped to [0, 1]
    (all zero where a map has no positive part).

    Examples
    --------
    >>> m = np.zeros((1, 10, 10)); m[0, :5] = np.arange(50).reshape(5, 10); m[0, 9, 9] = -3
    >>> s = normalise_maps(m)
    >>> float(s.min()), float(s.max()), round(float(s[0, 2, 5]), 2)
    (0.0, 1.0, 0.52)
    """
    pos = np.clip(np.asarray(maps, np.float32), 0, None)
    flat = pos.reshape(len(pos), -1)
    scale = np.percentile(flat, percentile, axis=1) if flat.shape[1] else np.zeros(len(pos))
    scale = np.where(scale > 0, scale, flat.max(axis=1, initial=0.0))
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(pos / scale[:, None, None], 0.0, 1.0)


def randomised_model(bundle: Any, seed: int = 0, *, above: str | None = None) -> nn.Module:
    """The bundle's architecture with freshly initialised weights (:func:`ctcid.models.create_model` with its
    arguments, torch seeded with ``seed``): the model of the randomisation check.

    With ``above`` (a layer name), only the weights after that layer (in the order the network registers them:
    the later stages and the head) are re-initialised and the rest stay trained: the cascading randomisation of
    Adebayo et al. down to that layer. The feature scaler's statistics (the preprocessing of a feature model, not
    learned weights) are always kept.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from ctcid.models import BundleMeta, create_model
    >>> meta = BundleMeta("resnet18", ["BF"], {}, [32, 32], 32, 0.64)
    >>> bundle = SimpleNamespace(meta=meta, model=create_model("resnet18"))
    >>> top = randomised_model(bundle, above="layer2").state_dict()
    >>> trained = bundle.model.state_dict()
    >>> bool((top["layer2.0.conv1.weight"] == trained["layer2.0.conv1.weight"]).all())
    True
    >>> bool((top["layer3.0.conv1.weight"] == trained["layer3.0.conv1.weight"]).all())
    False
    """
    from ..models import create_model

    meta = bundle.meta
    torch.manual_seed(seed)
    fresh = create_model(meta.architecture, in_chans=len(meta.channels), **meta.model_kwargs)
    trained = bundle.model.state_dict()
    keys = list(trained)
    cut = -1
    if above is not None:
        below = [i for i, k in enumerate(keys) if k.startswith(above + ".")]
        if not below:
            raise ValueError(f"the model has no layer {above!r} with weights")
        cut = below[-1]
    state = fresh.state_dict()
    with torch.no_grad():
        for i, k in enumerate(keys):
            if i <= cut or k.startswith("scaler."):
                state[k].copy_(trained[k])
    return fresh.eval()


def bundle_maps(
    bundle: Any,
    ds: Any,
    cells: np.ndarray,
    method: str = DEFAULT_METHOD,
    *,
    layer: str = "auto",
    model: nn.Module | None = None,
    feeds: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, str | None]:
    """Signed maps ``[n, H, W]`` (crop size) of ``cells`` of ``ds`` for an image bundle (or another ``model`` of
    its architecture), with the layer used. ``feeds`` are the network inputs (:func:`ctcid.predict.bundle_inputs`)
    when already prepared."""
    from ..predict import bundle_inputs

    feeds = feeds if feeds is not None else bundle_inputs(bundle, ds, np.asarray(cells, np.int64))
    maps, name = attribute_images(model or bundle.model, feeds[0], method, layer=layer, extra=tuple(feeds[1:]))
    return to_crop(maps, ds.crop_size), name


def saliency_maps(
    bundle: Any, ds: Any, cells: np.ndarray, method: str = DEFAULT_METHOD, *, layer: str = "auto"
) -> np.ndarray | None:
    """Saliency ``[n, H, W]`` in [0, 1] (crop size) of ``cells`` for overlays; ``None`` for a model without
    images."""
    if "image" not in bundle.meta.inputs or not isinstance(bundle.model, nn.Module):
        return None
    maps, _ = bundle_maps(bundle, ds, cells, method, layer=layer)
    return normalise_maps(maps)
