"""Typed options: dataclasses whose fields carry their help, choices and bounds, checked by one validator.

Every option set of ctcid (ingest, synth, segmentation, features, augmentation, training, detection, ...) is a
dataclass derived from :class:`Options` whose fields are declared with :func:`option`. The same declaration
gives the default, the ``--help`` text and ``[default: ...]`` of the command line (see :mod:`ctcid.cli`), the
checks of :func:`validate` (type, choices, bounds; nested sections recursively) and the YAML section read by
:func:`resolve`: one YAML file holds every option, one section per command (``ingest:``, ``train:``, ...), and
flags given on the command line win. A bad value raises :class:`ConfigError`, which names the field (the
command line names its flag instead).

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass
... class Opts(Options):
...     size: int = option(80, help="Crop size in px.", ge=16)
...     layout: str = option("auto", help="Export layout.", choices=("auto", "deparray"))
>>> resolve(Opts, None, "ingest", {"size": 64})
Opts(size=64, layout='auto')
>>> Opts(size=8).validate()
Traceback (most recent call last):
...
ctcid.config.ConfigError: size must be >= 16, got 8
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import CtcidError

__all__ = [
    "ConfigError",
    "Options",
    "arguments_for",
    "flag_of",
    "from_dict",
    "option",
    "parse_list",
    "parse_map",
    "read_config",
    "resolve",
    "to_yaml",
    "validate",
]

T = TypeVar("T")
_MISSING = dataclasses.MISSING


class ConfigError(CtcidError):
    """A bad option value: ``field`` (dotted for nested sections), what is wrong (``detail``), and the
    command-line ``flag`` that sets it when there is one."""

    def __init__(self, field: str, detail: str, flag: str | None = None):
        self.field, self.detail, self.flag = field, detail, flag
        super().__init__(f"{field} {detail}")

    def for_cli(self) -> str:
        """The message as the command line words it: naming the flag when the option has one."""
        return f"{self.flag or self.field} {self.detail}"


def option(
    default: Any = _MISSING,
    *,
    help: str,
    default_factory: Any = _MISSING,
    choices: tuple[Any, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    flag: str | None = None,
    cli: bool = True,
    parse: Any = None,
) -> Any:
    """A dataclass field with its help text, allowed values and bounds.

    ``flag`` is the command-line flag when it is not ``--`` plus the name with dashes; ``cli=False`` keeps the
    option out of the command line (YAML only, e.g. nested sections); ``parse(text)`` turns the flag's text
    into the field's value when commas (lists ``A,B``, maps ``A=B,C=D``) are not enough.
    """
    meta = {
        "help": help,
        "choices": choices,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "flag": flag,
        "cli": cli,
        "parse": parse,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(field: dataclasses.Field) -> str:
    """The command-line flag of a field: its ``flag`` metadata, or ``--`` and the name with dashes."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type (the subset of typing that options use)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args, strict=True))
        return all(_type_ok(v, args[0]) for v in value) if args else True
    if origin is dict:
        if not isinstance(value, dict):
            return False
        return all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items()) if args else True
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_field(f: dataclasses.Field, value: Any, hint: Any, name: str) -> None:
    flag = flag_of(f) if f.metadata.get("cli", True) and f.metadata else None
    if not _type_ok(value, hint):
        raise ConfigError(name, f"must be {_describe(hint)}, got {value!r}", flag)
    meta = f.metadata
    choices = meta.get("choices")
    if choices is not None and value is not None:
        items = value if isinstance(value, list | tuple) else [value]
        bad = [v for v in items if v not in choices]
        if bad:
            raise ConfigError(name, f"must be one of {', '.join(map(str, choices))}, got {bad[0]!r}", flag)
    if isinstance(value, int | float) and not isinstance(value, bool):
        for key, op, word in (
            ("ge", float.__ge__, ">="),
            ("gt", float.__gt__, ">"),
            ("le", float.__le__, "<="),
            ("lt", float.__lt__, "<"),
        ):
            bound = meta.get(key)
            if bound is not None and not op(float(value), float(bound)):
                raise ConfigError(name, f"must be {word} {bound:g}, got {value!r}", flag)


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of an options dataclass (types, choices, bounds; nested sections too), then its
    ``__check__`` method (rules that tie fields together); raise :class:`ConfigError` naming the first bad one."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        _check_field(f, value, hints[f.name], prefix + f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, prefix + f.name + ".")
    check = getattr(obj, "__check__", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:
            if prefix:
                raise ConfigError(prefix + exc.field, exc.detail, exc.flag) from None
            raise


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "", strict: bool = True) -> T:
    """Build ``cls`` from a mapping, nested sections included; unknown keys are refused (or dropped when not
    ``strict``). Values are not checked here (see :func:`validate`).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Opts(Options):
    ...     k: int = option(1, help="k")
    >>> from_dict(Opts, {"k": 3})
    Opts(k=3)
    >>> from_dict(Opts, {"kk": 3})
    Traceback (most recent call last):
    ...
    ctcid.config.ConfigError: kk is not an option (known: k)
    """
    if not isinstance(data, Mapping):
        raise ConfigError(where.rstrip(".") or cls.__name__, f"must be a mapping, got {data!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown and strict:
        raise ConfigError(where + unknown[0], f"is not an option (known: {', '.join(sorted(fields))})")
    values = {}
    for name, value in data.items():
        if name not in fields:
            continue
        hint = hints[name]
        nested = _nested_class(hint)
        if nested is not None and isinstance(value, Mapping):
            own = nested.__dict__.get("from_dict")  # a section that knows how to read itself (e.g. Calibration)
            if isinstance(own, classmethod) and not issubclass(nested, Options):
                value = nested.from_dict(value)  # type: ignore[attr-defined]
            else:
                value = from_dict(nested, value, where=f"{where}{name}.", strict=strict)
        elif typing.get_origin(hint) is dict and isinstance(value, Mapping):
            inner = _nested_class(typing.get_args(hint)[1])
            if inner is not None:
                value = {
                    k: from_dict(inner, v, where=f"{where}{name}.{k}.", strict=strict) for k, v in value.items()
                }
        values[name] = value
    return cls(**values)


def _nested_class(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return found[0] if found else None
    return None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


class Options:
    """Base of every options dataclass: :func:`validate`, :meth:`to_dict` and :meth:`from_dict`; the class
    docstring gains an ``Attributes`` section written from the fields' help."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        lines = []
        for name, annotation in inspect.get_annotations(cls).items():
            f = cls.__dict__.get(name)
            if not isinstance(f, dataclasses.Field) or "help" not in f.metadata:
                continue
            default = f.default if f.default is not _MISSING else None
            if f.default_factory is not _MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            shown = "" if dataclasses.is_dataclass(default) else f", default {default!r}"
            lines.append(f"{name} : {annotation}{shown}\n    {f.metadata['help']}")
        if lines:
            cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\nAttributes\n----------\n" + "\n".join(lines) + "\n"

    def __post_init__(self) -> None:
        # a nested section may be given as a mapping of some of its fields: TrainConfig(gbm={"max_iter": 50})
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            nested = _nested_class(hints[f.name])
            if nested is not None and isinstance(value, Mapping):
                object.__setattr__(self, f.name, from_dict(nested, value, where=f"{f.name}."))

    def validate(self) -> None:
        """Check every field (see :func:`validate`)."""
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain data (nested sections as dicts, tuples as lists), as written to YAML and JSON."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], *, strict: bool = True) -> T:
        """Build the options from plain data (see :func:`from_dict`)."""
        return from_dict(cls, data, strict=strict)

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes``; a nested section may be changed by a mapping of some of its fields. Every field
        is carried over, including those a subclass's :meth:`to_dict` leaves out of its records."""
        current = _plain(dataclasses.asdict(self))  # type: ignore[call-overload]
        return from_dict(type(self), _merge(current, changes))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict of sections."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CtcidError("config file not found", path) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CtcidError(f"malformed YAML ({str(exc).splitlines()[0]})", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CtcidError("a config file must be a mapping of sections (e.g. `ingest:`)", path)
    return data


def resolve(cls: type[T], config: str | os.PathLike[str] | None, section: str, overrides: dict[str, Any]) -> T:
    """Build ``cls`` from a config file's ``section``, apply the non-``None`` ``overrides`` (a nested section
    by a mapping of some of its fields), and validate the result."""
    values: dict[str, Any] = {}
    if config is not None:
        sect = read_config(config).get(section, {}) or {}
        if not isinstance(sect, dict):
            raise CtcidError(f"section {section!r} must be a mapping", config)
        try:
            from_dict(cls, sect, where=f"{section}.")  # unknown keys named with their section
        except ConfigError as exc:
            raise CtcidError(f"{exc} in section {section!r}", config) from None
        values.update(sect)
    values = _merge(values, {k: v for k, v in overrides.items() if v is not None})
    obj = from_dict(cls, values)
    validate(obj)
    return obj


def to_yaml(obj: Any, section: str) -> str:
    """The YAML text of an options dataclass under its section name (the resolved config of a run)."""
    data = obj.to_dict() if isinstance(obj, Options) else _plain(dataclasses.asdict(obj))
    return yaml.safe_dump({section: data}, sort_keys=False)


def arguments_for(fn: Callable[..., Any], options: Any, **given: Any) -> dict[str, Any]:
    """The fields of the dataclass ``options`` named like keyword-only parameters of ``fn``, then ``given``.

    A call that hands a function the options it shares with a dataclass names each of them once this way.

    Examples
    --------
    >>> @dataclasses.dataclass
    ... class Opts:
    ...     size: int = 80
    ...     workers: int = 2
    >>> def crop(image, *, size, fill=0): ...
    >>> arguments_for(crop, Opts(), fill=1)
    {'size': 80, 'fill': 1}
    """
    params = inspect.signature(fn).parameters.items()
    taken = {name for name, p in params if p.kind == inspect.Parameter.KEYWORD_ONLY}
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name in taken} | given


def parse_map(text: str | None, option: str) -> dict[str, str] | None:
    """Parse ``A=B,C=D`` into ``{"A": "B", "C": "D"}``.

    >>> parse_map("FITC=CK,PE=CD45", "--channel-map")
    {'FITC': 'CK', 'PE': 'CD45'}
    """
    if text is None:
        return None
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CtcidError(f"{option} expects NAME=VALUE pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def parse_list(text: str | None, option: str) -> list[str] | None:
    """Parse ``BF,DAPI`` into ``["BF", "DAPI"]``; duplicates are refused.

    >>> parse_list("BF, DAPI", "--channels")
    ['BF', 'DAPI']
    """
    if text is None:
        return None
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise CtcidError(f"{option} needs at least one name")
    twice = sorted({i for i in items if items.count(i) > 1})
    if twice:
        raise CtcidError(f"{option} names {', '.join(twice)} twice: {text}")
    return items
