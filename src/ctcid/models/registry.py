"""One factory over a registry: ``create_model(name, ...)``.

The registry is a leaf: model modules register into it (``@register_model``), and importing
:mod:`ctcid.models` imports them all, so every registered name is known before any lookup.

Names registered here (ctcid's own architectures) come first; any other name is a timm
backbone (``resnet34``, ``resnet50``, ``efficientnet_b4``, ``densenet121``, ...). The first
convolution takes ``in_chans`` channels and the head gives ``num_classes`` logits (one logit,
the CTC class, by default). Weights come from nowhere (default, trained from scratch), from
timm's hub (``pretrained=True``, needs the network) or from a local safetensors file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CtcidError, arg

__all__ = ["create_model", "is_model", "list_models", "load_weights", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
#: Models that are not torch modules: gradient-boosted trees on the feature table (see ``ctcid.models.gbm``).
TREE_MODELS = ("features_gbm",)
#: A logistic regression on the standardised feature table (see ``ctcid.models.linear``).
LINEAR_MODELS = ("features_logreg",)
#: Models stored as plain arrays and evaluated with numpy: no torch module, no checkpoint, no ONNX export.
ARRAY_MODELS = TREE_MODELS + LINEAR_MODELS
#: Architectures compared in System A's table.
SYSTEM_A_BACKBONES = ("resnet34", "resnet50", "efficientnet_b4", "densenet121")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a model constructor ``fn(*, in_chans, num_classes, **kw)`` under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models(pattern: str | None = None) -> list[str]:
    """ctcid's own models, then timm's backbones matching ``pattern`` (``fnmatch`` style)."""
    import fnmatch

    import timm

    own = sorted(n for n in (*_REGISTRY, *ARRAY_MODELS) if pattern is None or fnmatch.fnmatch(n, pattern))
    return own + timm.list_models(pattern or "*")


def is_model(name: str) -> bool:
    import timm

    return name in _REGISTRY or name in ARRAY_MODELS or timm.is_model(name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def create_model(
    name: str,
    *,
    in_chans: int = 1,
    num_classes: int = 1,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name.

    Parameters
    ----------
    name
        A registered ctcid model or any timm backbone name.
    in_chans
        Input channels (e.g. 1 for bright field only, 4 for BF, DAPI, CK, CD45).
    num_classes
        Output logits; 1 for the binary CTC-vs-leukocyte task.
    pretrained
        Load timm's ImageNet weights from its hub (the first convolution is adapted to
        ``in_chans``). Offline, this is an immediate error, never a hang.
    weights
        A local ``.safetensors`` file of the same architecture (e.g. downloaded ImageNet weights);
        the first convolution is adapted and a classifier of another size is left new.
    **kwargs
        Passed to the constructor (``drop_rate``, ``drop_path_rate``, ...).

    Examples
    --------
    >>> import torch
    >>> m = create_model("resnet18", in_chans=1)
    >>> m(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 1])
    """
    if pretrained and weights is not None:
        raise CtcidError(f"give either {arg('pretrained', ...)} or {arg('weights', ...)}, not both")
    if name in ARRAY_MODELS:
        raise CtcidError(
            f"{name} is a {'tree' if name in TREE_MODELS else 'linear'} model on the feature table, not a "
            "network; train it with `ctcid train`"
        )
    if in_chans < 1 or num_classes < 1:
        raise CtcidError(f"in_chans and num_classes must be >= 1, got {in_chans} and {num_classes}")
    if name in _REGISTRY:
        try:
            model = _REGISTRY[name](in_chans=in_chans, num_classes=num_classes, pretrained=pretrained, **kwargs)
        except (TypeError, ValueError) as exc:
            raise CtcidError(f"bad option for model {name}: {exc}") from None
    else:
        import timm

        if not timm.is_model(name):
            import difflib

            close = difflib.get_close_matches(name, list(_REGISTRY) + timm.list_models(), n=5, cutoff=0.6)
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise CtcidError(f"unknown model {name!r} (not a ctcid model nor a timm backbone{hint})")
        if pretrained and not _hub_reachable():
            raise CtcidError(
                f"{arg('pretrained', ...)} needs the network to fetch {name} weights from timm's hub, which "
                f"cannot be reached; download the weights elsewhere and pass {arg('weights', 'FILE.safetensors')}"
            )
        try:
            model = timm.create_model(
                name, pretrained=pretrained, in_chans=in_chans, num_classes=num_classes, **kwargs
            )
        except TypeError as exc:
            raise CtcidError(f"bad option for model {name}: {exc}") from None
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if not pretrained or num_classes != cfg.get("num_classes"):  # the classifier is new, not loaded
            _fan_in_head(model)
    if weights is not None:
        load_weights(model, weights)
    return model


def _fan_in_head(model: nn.Module) -> None:
    """Re-draw a new linear classifier whose weights are larger than PyTorch's fan-in default allows.

    timm's EfficientNet and MobileNet families initialise the classifier by its fan-out (Google's scheme),
    ``U(-1/sqrt(num_classes), 1/sqrt(num_classes))``: with one logit every weight is drawn from ``U(-1, 1)``,
    so an EfficientNet-B4 starts with logits of standard deviation about 15 and a training loss near 10, and
    spends its first epochs undoing that. A head whose weights' standard deviation exceeds ``1/sqrt(fan_in)``
    (PyTorch's default ``nn.Linear`` init stays below it, at ``1/sqrt(3 fan_in)``) is re-drawn with that
    default; other heads (ResNet, DenseNet, ConvNeXt, ViT) are left exactly as timm made them.
    """
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear) and float(head.weight.detach().std()) * head.in_features**0.5 > 1.0:
        head.reset_parameters()


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a local safetensors state dict into ``model``, adapting the first convolution's channels.

    Keys of the classifier with another shape are skipped (the head stays new). Anything else that
    does not fit is a clear error.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CtcidError("weights file not found", path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CtcidError(
            f"not a readable safetensors file ({exc}); only safetensors weights are loaded", path
        ) from None
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    first = cfg.get("first_conv")
    head = cfg.get("classifier")
    heads = (head,) if isinstance(head, str) else tuple(head or ())
    if first and f"{first}.weight" in state and f"{first}.weight" in own:
        w = state[f"{first}.weight"]
        want = own[f"{first}.weight"].shape[1]
        if w.shape[1] != want:
            from timm.models import adapt_input_conv

            state[f"{first}.weight"] = adapt_input_conv(want, w)
    skipped = []
    for key in list(state):
        if key in own and state[key].shape != own[key].shape and any(key.startswith(h + ".") for h in heads):
            skipped.append(key)
            del state[key]
    bad = [k for k in state if k in own and state[k].shape != own[k].shape]
    if bad:
        raise CtcidError(f"weights do not fit this architecture (shape mismatch at {bad[0]})", path)
    missing = [k for k in own if k not in state and not any(k.startswith(h + ".") for h in heads)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CtcidError(
            f"weights are for another architecture ({len(missing)} missing, {len(unexpected)} "
            f"unexpected keys, e.g. {what})",
            path,
        )
    model.load_state_dict(state, strict=False)
    return model
