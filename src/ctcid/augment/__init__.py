"""Data augmentation for training (System A): geometric, illumination and noise families, batched on the device.

:class:`BatchAugment` is a ``torch.nn.Module`` that augments a whole batch ``[B, C, H, W]`` where it already
lies (CPU or GPU) in a handful of kernels, with every parameter drawn from a seeded ``torch.Generator``;
:class:`AugmentConfig` holds the parameters and their documented defaults; :func:`describe` records a setup
for the run folder. Both load without torch (:mod:`ctcid.augment.config`); the kernels on first use.

Examples
--------
>>> import torch
>>> from ctcid.augment import AugmentConfig, BatchAugment
>>> aug = BatchAugment(AugmentConfig(noise=False))
>>> aug.config.families()
['geometric', 'illumination']
>>> x = torch.rand(4, 1, 32, 32)
>>> g = torch.Generator().manual_seed(1)
>>> y = aug(x, g)
>>> y.shape == x.shape and not torch.equal(y, x)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .batch import AugmentParams, BatchAugment
    from .config import MAX_SPECKS, AugmentConfig, augment_families, describe
    from .grounded import grounded_config, measure_variation

__all__ = [
    "MAX_SPECKS",
    "AugmentConfig",
    "AugmentParams",
    "BatchAugment",
    "augment_families",
    "describe",
    "grounded_config",
    "measure_variation",
]

# the options load without torch; the batched kernels (and torch) on first use
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "config": ["MAX_SPECKS", "AugmentConfig", "augment_families", "describe"],
        "batch": ["AugmentParams", "BatchAugment"],
        "grounded": ["grounded_config", "measure_variation"],
    },
    __all__,
)
