"""Reading the versioned JSON headers of ctcid's folders (datasets, model bundles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CtcidError

__all__ = ["read_versioned_json"]


def read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Parse ``path``, check its ``format`` is ``fmt`` and its ``format_version`` is not newer than ``version``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CtcidError(f"malformed {what} ({exc})", path) from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CtcidError(f"not a ctcid {what}", path)
    if int(data.get("format_version", 0)) > version:
        raise CtcidError(
            f"{what} format {data['format_version']} is newer than this ctcid reads ({version}); upgrade ctcid",
            path,
        )
    return data
