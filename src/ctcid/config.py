"""Options as dataclasses, read from YAML and overridden by command-line flags.

One YAML file holds every option, one section per command (``ingest:``, ``synth:``, ...);
flags given on the command line win. The resolved options are saved with every result.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass
... class Opts:
...     size: int = 80
...     layout: str = "auto"
>>> resolve(Opts, None, "ingest", {"size": 64})
Opts(size=64, layout='auto')
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import CtcidError

__all__ = ["parse_list", "parse_map", "read_config", "resolve", "to_yaml"]

T = TypeVar("T")


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
    """Build ``cls`` from a config file's ``section``, then apply the non-``None`` ``overrides``."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if config is not None:
        sect = read_config(config).get(section, {}) or {}
        if not isinstance(sect, dict):
            raise CtcidError(f"section {section!r} must be a mapping", config)
        unknown = sorted(set(sect) - names)
        if unknown:
            raise CtcidError(
                f"unknown option(s) {', '.join(unknown)} in section {section!r} "
                f"(known: {', '.join(sorted(names))})",
                config,
            )
        values.update(sect)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except TypeError as exc:
        raise CtcidError(f"bad options for {section}: {exc}") from None


def to_yaml(obj: Any, section: str) -> str:
    """The YAML text of a dataclass under its section name (the resolved config of a run)."""
    return yaml.safe_dump({section: dataclasses.asdict(obj)}, sort_keys=False)


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
    """Parse ``BF,DAPI`` into ``["BF", "DAPI"]``; duplicates are refused."""
    if text is None:
        return None
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise CtcidError(f"{option} needs at least one name")
    if len(set(items)) != len(items):
        raise CtcidError(f"{option} names a channel twice: {text}")
    return items
