"""Package namespaces that load their submodules on first use, as scikit-image's subpackages do.

A package lists each public name with the submodule defining it; ``import ctcid.models`` then costs nothing
until a name is used, so that the command line, and code needing only plain options or metadata, start without
importing torch, timm or Lightning.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, submodules: dict[str, Iterable[str]], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``submodules`` maps each submodule (relative name) to the
    public names it defines, which must be exactly ``public`` (the package's ``__all__``).

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("json", {"decoder": ["JSONDecodeError"]}, ["JSONDecodeError"])
    >>> getattr_("JSONDecodeError").__name__
    'JSONDecodeError'
    >>> getattr_("nothing")
    Traceback (most recent call last):
    ...
    AttributeError: module 'json' has no attribute 'nothing'
    """
    where = {name: module for module, names in submodules.items() for name in names}
    if sorted(where) != sorted(public) or len(where) != len(public):
        raise ValueError(f"{package}: the lazily exported names differ from __all__")

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(importlib.import_module(package), name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(public))

    return __getattr__, __dir__
