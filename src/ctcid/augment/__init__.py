"""Data augmentation for training (System A): geometric, illumination and noise families, batched on the device.

:class:`BatchAugment` is a ``torch.nn.Module`` that augments a whole batch ``[B, C, H, W]`` where it already
lies (CPU or GPU) in a handful of kernels, with every parameter drawn from a seeded ``torch.Generator``;
:class:`AugmentConfig` holds the parameters and their documented defaults; :func:`describe` records a setup
for the run folder.

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

from . import batch, grounded
from .batch import *  # noqa: F403 (its __all__)
from .grounded import *  # noqa: F403 (its __all__)

__all__ = [*batch.__all__, *grounded.__all__]
