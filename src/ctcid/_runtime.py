"""Where and how a process runs: the compute device, mixed precision, data-parallel ranks, the source revision.

Shared by training, prediction and the benchmarks, below all of them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import CtcidError, arg

if TYPE_CHECKING:  # torch loads on first use, so that `ctcid --help` and the light commands start fast
    import torch

__all__ = [
    "Progress",
    "accelerator_for",
    "autocast_dtype",
    "git_revision",
    "launched_worker",
    "quiet_lightning",
    "resolve_device",
]


class Progress(Protocol):
    """How every long step reports progress: ``progress(done, total, stage)`` with absolute counts (``total``
    ``None`` when unknown), ``stage`` naming the step when a function runs several (``"ingest"``, ``"predict"``).
    The command line draws one bar per stage; a notebook may pass any callable of this shape."""

    def __call__(self, done: int, total: int | None, stage: str | None = None) -> None: ...


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu`` or ``cuda``; asking for a GPU that is absent is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CtcidError(f"{arg('device', 'cuda')} was asked for but no CUDA device is available")
    return torch.device(device)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast type for ``precision`` on ``device``: bf16 (or fp16) on a GPU, none on the CPU or at fp32.

    >>> autocast_dtype(resolve_device("cpu")) is None
    True
    """
    import torch

    if device.type != "cuda" or precision in ("32", "32-true"):
        return None
    return torch.float16 if precision == "16-mixed" else torch.bfloat16


def accelerator_for(device: str, precision: str) -> tuple[str, str]:
    """Lightning accelerator and precision for ``device``/``precision`` options (bf16 autocast on GPU).

    >>> accelerator_for("cpu", "auto")
    ('cpu', '32-true')
    """
    dev = resolve_device(device)
    if precision == "auto":
        precision = "bf16-mixed" if dev.type == "cuda" else "32-true"
    if precision == "32":
        precision = "32-true"
    return ("gpu" if dev.type == "cuda" else "cpu"), precision


def launched_worker() -> bool:
    """True in a data-parallel process other than the first (its rank is set by the launcher or torchrun)."""
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        if int(os.environ.get(key, "0") or 0) > 0:
            return True
    return False


def quiet_lightning() -> None:
    """Silence Lightning's notices that say nothing about this run (ctcid reports progress itself)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*`isinstance.*LeafSpec.*")
    # every process validates on all validation cells, so epoch-level validation metrics need no syncing
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


def git_revision() -> str | None:
    """The source tree's git revision, when ctcid runs from a checkout."""
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
