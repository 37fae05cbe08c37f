"""Command-line options generated from the option dataclasses, so help, defaults and checks have one source.

:func:`with_options` adds one flag per field of an :class:`ctcid.config.Options` class that is meant for the
command line (its help text and ``[default: ...]`` come from the field), plus ``--config``; the command receives
the values given on the command line as ``overrides`` (a dict, ``None`` for flags not given) and builds its
options with :func:`resolve_options` (YAML section, then flags, then one validation).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import ConfigError, flag_of, parse_list, parse_map, resolve
from . import _ui
from ._app import ConfigOpt, NewDatasetArg, OverwriteOpt

__all__ = ["AUGMENT_FAMILIES", "dataset_command", "resolve_options", "run_with_options", "with_options"]

AUGMENT_FAMILIES = ("geometric", "illumination", "noise")


def _base(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else hint


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def _cli_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]


def _parameter(f: dataclasses.Field, hint: Any) -> inspect.Parameter:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    text = f.metadata["help"] + ("" if default is None else f" [default: {_shown(default)}]")
    base = _base(hint)
    flag = flag_of(f)
    if f.metadata.get("parse") is not None:
        annotation: Any = Annotated[str | None, typer.Option(flag, help=text)]
    elif base is bool:
        decls = flag if "/" in flag else f"{flag}/--no-{flag[2:]}"
        annotation = Annotated[bool | None, typer.Option(decls, help=text)]
    else:
        kind = base if base in (int, float) else str
        annotation = Annotated[kind | None, typer.Option(flag, help=text)]  # type: ignore[valid-type]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _convert(f: dataclasses.Field, hint: Any, value: Any) -> Any:
    """A flag's text as the field's type (lists and maps are comma-separated)."""
    if value is None:
        return None
    if f.metadata.get("parse") is not None:
        try:
            return f.metadata["parse"](value)
        except ConfigError as exc:
            raise ConfigError(exc.field, exc.detail, exc.flag or flag_of(f)) from None
    base = _base(hint)
    flag = flag_of(f).split("/")[0]
    origin = typing.get_origin(base)
    if origin is list:
        return [] if value in ("", "none") else parse_list(value, flag)
    if origin is dict:
        return parse_map(value, flag)
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # e.g. devices: int | str
        return int(value) if str(value).isdigit() else value
    return value


def with_options(cls: type, *, augment: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the command-line fields of ``cls`` and ``--config`` to a command, which receives ``overrides``.

    With ``augment`` (training options) ``--augment all|none|geometric,illumination,noise`` switches the
    augmentation families.
    """
    fields = _cli_fields(cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)  # the typer metadata of its own parameters
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
            else p
            for p in sig.parameters.values()
            if p.name != "overrides"
        ]
        extra = [_parameter(f, hint) for f, hint in fields]
        if augment:
            text = "Augmentation families: all, none, or a list of geometric,illumination,noise. [default: all]"
            extra.append(
                inspect.Parameter(
                    "augment",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[str | None, typer.Option(help=text)],
                )
            )
        extra.append(
            inspect.Parameter(
                "config",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=ConfigOpt,
            )
        )

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: _convert(f, hint, kwargs.pop(f.name)) for f, hint in fields}
            if augment:
                values["augment"] = _families(kwargs.pop("augment"))
            values["config"] = kwargs.pop("config")
            return fn(**kwargs, overrides=values)

        wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _families(text: str | None) -> dict[str, bool] | None:
    if text is None:
        return None
    if text in ("all", "none"):
        return dict.fromkeys(AUGMENT_FAMILIES, text == "all")
    chosen = parse_list(text, "--augment") or []
    bad = [f for f in chosen if f not in AUGMENT_FAMILIES]
    if bad:
        raise ConfigError(
            "augment",
            f"takes all, none or families from {', '.join(AUGMENT_FAMILIES)}; got {', '.join(bad)}",
            "--augment",
        )
    return {f: f in chosen for f in AUGMENT_FAMILIES}


def resolve_options(cls: type, section: str, overrides: dict[str, Any]) -> Any:
    """The options of a command: the ``--config`` file's ``section``, then the flags given, validated."""
    values = dict(overrides)
    return resolve(cls, values.pop("config", None), section, values)


def run_with_options(
    run: Callable[..., Any], cls: type, section: str, src: Path, out: Path, overwrite: bool, overrides: dict | None
) -> Any:
    """Run a command that reads ``src`` into a new dataset ``out`` (``ingest``, ``detect``): its options from
    ``--config`` and the flags, a progress bar on stderr and its notes; return its result."""
    opts = resolve_options(cls, section, overrides or {})
    with _ui.progress(section) as progress:
        return run(src, out, opts, overwrite=overwrite, progress=progress, log=_ui.note)


def dataset_command(
    cls: type, run: Callable[..., Any], summary: Callable[[Any, Path], str]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a command that reads one source into a new dataset (``ingest``, ``detect``) from a function that
    declares only the source argument and the command's help.

    The command takes that argument, ``OUT``, ``--overwrite``, the command-line fields of ``cls`` and
    ``--config``; it runs ``run`` through :func:`run_with_options` (the function's name is the command and the
    YAML section) and prints ``summary(result, out)``.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        (source,) = inspect.signature(fn, eval_str=True).parameters.values()

        @functools.wraps(fn)
        def command(out: Path, overwrite: bool = False, overrides: dict | None = None, **kwargs: Any) -> None:
            result = run_with_options(run, cls, fn.__name__, kwargs[source.name], out, overwrite, overrides)
            _ui.out.print(summary(result, out))

        keyword = inspect.Parameter.KEYWORD_ONLY
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                source.replace(kind=keyword),
                inspect.Parameter("out", keyword, annotation=NewDatasetArg),
                inspect.Parameter("overwrite", keyword, default=False, annotation=OverwriteOpt),
                inspect.Parameter("overrides", keyword, default=None, annotation=dict | None),
            ],
            return_annotation=None,
        )
        return with_options(cls)(command)

    return decorate
