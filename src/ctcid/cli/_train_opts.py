"""The training options shared by ``train``, ``cv`` and ``ablate``, declared once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..config import parse_list, resolve
from ..errors import CtcidError

if TYPE_CHECKING:
    from ..train import TrainConfig

_OPTIONS: list[tuple[str, Any]] = [
    (
        "model",
        Annotated[
            str | None,
            typer.Option(
                help="Model: a timm backbone (resnet34, resnet50, efficientnet_b4, "
                "densenet121, ...) or a ctcid model. [default: resnet34]"
            ),
        ],
    ),
    (
        "channels",
        Annotated[str | None, typer.Option(help="Input channels, e.g. BF or BF,DAPI,CK,CD45. [default: BF]")],
    ),
    (
        "flatfield_channels",
        Annotated[
            str | None,
            typer.Option(help="Channels scaled per crop by their background (bright field). [default: BF]"),
        ],
    ),
    (
        "train_extra_channels",
        Annotated[
            str | None,
            typer.Option(
                help="Channels added to training only, through the single input channel (System A: DAPI)."
            ),
        ],
    ),
    (
        "extra_mode",
        Annotated[str | None, typer.Option(help="extra (more samples) or substitute. [default: extra]")],
    ),
    ("extra_p", Annotated[float | None, typer.Option(help="Substitution probability. [default: 0.5]")]),
    (
        "augment",
        Annotated[
            str | None,
            typer.Option(
                help="Augmentation families: all, none, or a list of geometric,illumination,noise. [default: all]"
            ),
        ],
    ),
    ("input_size", Annotated[int | None, typer.Option(help="Model input size in px. [default: crop size]")]),
    (
        "pretrained",
        Annotated[
            bool | None,
            typer.Option("--pretrained/--scratch", help="ImageNet weights from timm's hub (needs network)."),
        ],
    ),
    ("weights", Annotated[Path | None, typer.Option(help="Local safetensors weights to start from.")]),
    ("epochs", Annotated[int | None, typer.Option(help="Maximum epochs. [default: 30]")]),
    ("batch_size", Annotated[int | None, typer.Option(help="Batch size. [default: 128]")]),
    ("lr", Annotated[float | None, typer.Option(help="Peak learning rate (one-cycle, AdamW). [default: 1e-3]")]),
    ("weight_decay", Annotated[float | None, typer.Option(help="AdamW weight decay. [default: 1e-4]")]),
    ("loss", Annotated[str | None, typer.Option(help="bce, weighted_bce or focal. [default: weighted_bce]")]),
    ("sampler", Annotated[str | None, typer.Option(help="shuffle or balanced. [default: shuffle]")]),
    ("monitor", Annotated[str | None, typer.Option(help="val_pr_auc or val_loss. [default: val_pr_auc]")]),
    ("patience", Annotated[int | None, typer.Option(help="Early-stopping patience in epochs. [default: 6]")]),
    ("n_folds", Annotated[int | None, typer.Option("--folds", help="Patient-grouped folds. [default: 5]")]),
    (
        "val_fraction",
        Annotated[float | None, typer.Option(help="Share of patients for validation. [default: 0.2]")],
    ),
    ("n_boot", Annotated[int | None, typer.Option(help="Bootstrap resamples of patients. [default: 1000]")]),
    ("seed", Annotated[int | None, typer.Option(help="Random seed. [default: 0]")]),
    ("device", Annotated[str | None, typer.Option(help="auto, cpu or cuda. [default: auto]")]),
    ("precision", Annotated[str | None, typer.Option(help="auto (bf16 on GPU), 32, bf16-mixed. [default: auto]")]),
    ("devices", Annotated[str | None, typer.Option(help="Devices per node for data parallel runs. [default: 1]")]),
    ("strategy", Annotated[str | None, typer.Option(help="Lightning strategy, e.g. ddp. [default: auto]")]),
    ("num_nodes", Annotated[int | None, typer.Option(help="Nodes for multi-node runs. [default: 1]")]),
    ("workers", Annotated[int | None, typer.Option(help="Batch loader processes. [default: 0]")]),
    ("progress", Annotated[bool | None, typer.Option("--progress/--no-progress", help="Show progress bars.")]),
    ("backbone", Annotated[str | None, typer.Option(help="CNN branch of dual_branch. [default: resnet18]")]),
    ("fusion", Annotated[str | None, typer.Option(help="dual_branch fusion: concat or gated. [default: concat]")]),
    (
        "pca_components",
        Annotated[
            int | None,
            typer.Option(help="PCA of the features, fitted on training folds (0: none). [default: 0]"),
        ],
    ),
    ("config", Annotated[Path | None, typer.Option(help="YAML file (section train:); flags override it.")]),
]
NAMES = [n for n, _ in _OPTIONS]


def _augment(text: str | None, current: dict[str, Any]) -> dict[str, Any] | None:
    if text is None:
        return None
    fams = ("geometric", "illumination", "noise")
    if text == "all":
        return {**current, **dict.fromkeys(fams, True)}
    if text == "none":
        return {**current, **dict.fromkeys(fams, False)}
    chosen = parse_list(text, "--augment") or []
    bad = [f for f in chosen if f not in fams]
    if bad:
        raise CtcidError(f"--augment takes all, none or families from {', '.join(fams)}; got {', '.join(bad)}")
    return {**current, **{f: f in chosen for f in fams}}


def build_config(values: dict[str, Any]) -> TrainConfig:
    """The resolved TrainConfig from a YAML file and flags."""
    from ..train import TrainConfig

    cfg_path = values.pop("config", None)
    base = resolve(TrainConfig, cfg_path, "train", {})
    over = dict(values)
    over["channels"] = parse_list(over.get("channels"), "--channels")
    flat = over.get("flatfield_channels")
    over["flatfield_channels"] = (
        None if flat is None else ([] if flat in ("", "none") else parse_list(flat, "--flatfield-channels"))
    )
    extra = over.get("train_extra_channels")
    over["train_extra_channels"] = (
        None if extra is None else ([] if extra in ("", "none") else parse_list(extra, "--train-extra-channels"))
    )
    over["augment"] = _augment(over.get("augment"), base.augment)
    if over.get("weights") is not None:
        over["weights"] = str(over["weights"])
    if over.get("devices") is not None:
        over["devices"] = int(over["devices"]) if str(over["devices"]).isdigit() else over["devices"]
    merged = {**base.to_dict(), **{k: v for k, v in over.items() if v is not None}}
    cfg = TrainConfig(**merged)
    cfg.validate()
    return cfg


def with_train_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared options to a command; the command receives them as ``train_values``."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "train_values"]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a) for n, a in _OPTIONS]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        values = {n: kwargs.pop(n) for n in NAMES}
        return fn(**kwargs, train_values=values)

    wrapper.__signature__ = sig.replace(
        parameters=[
            *[
                p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
                else p
                for p in own
            ],
            *extra,
        ]
    )
    return wrapper
