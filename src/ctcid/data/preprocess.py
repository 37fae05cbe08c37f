"""The one preprocessing of an image batch, shared by training, prediction, export and explanation.

``uint16 pixels -> window (or flat-field) -> augmentation (training only; it also resamples) or a resize to the
input size -> standardisation``. Training (:class:`ctcid.train.module.CTCClassifier`), prediction
(:func:`ctcid.predict.infer_logits` and the data-parallel predictor), the ONNX export's inputs and the saliency
maps all call :func:`prepare_batch`, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .normalise import Normalizer

__all__ = ["network_inputs", "prepare_batch"]


def prepare_batch(
    pixels: torch.Tensor,
    src: torch.Tensor,
    normalizer: Normalizer,
    *,
    input_size: int,
    augment: torch.nn.Module | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The standardised float batch a network receives, from uint16 ``pixels`` ``[B, C, H, W]``.

    ``src`` ``[B, C]`` names the dataset channel of each input channel (its window and statistics). With
    ``augment`` (a :class:`ctcid.augment.BatchAugment`, which also resamples to its output size) the batch is
    augmented with ``generator``; otherwise it is resized to ``input_size`` when the crop differs (bilinear,
    antialiased when shrinking). ``out`` (float32, the pixels' shape) is a buffer to window into, reused between
    batches by prediction, which saves allocating and faulting in a new batch-sized tensor every time.

    Examples
    --------
    >>> norm = Normalizer({"CK": {"mode": "window", "lo": 0.0, "hi": 100.0, "mean": 0.5, "std": 0.25}}, ["CK"])
    >>> x = prepare_batch(torch.full((1, 1, 8, 8), 50, dtype=torch.uint16), torch.zeros(1, 1, dtype=torch.long),
    ...                   norm, input_size=4)
    >>> tuple(x.shape), float(x.mean())
    ((1, 1, 4, 4), 0.0)
    """
    x = normalizer.window(pixels, src, out=out)
    if augment is not None:
        x = augment(x, generator=generator)
    elif x.shape[-1] != input_size:
        x = F.interpolate(
            x,
            size=(input_size, input_size),
            mode="bilinear",
            align_corners=False,
            antialias=x.shape[-1] > input_size,
        )
    x = normalizer.standardise(x, src, inplace=True)  # x is this function's own tensor
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def network_inputs(
    batch: dict[str, Any],
    normalizer: Normalizer,
    input_size: int,
    inputs: tuple[str, ...],
    device: torch.device,
    buffer: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """What a network receives for a batch from the store (no augmentation): the prepared image batch and/or
    the feature rows, on ``device``. ``buffer`` (float32 ``[N, C, H, W]`` on ``device``, ``N`` at least the
    batch's size) is windowed into instead of a new tensor (see :func:`prepare_batch`)."""
    args = []
    if "image" in inputs:
        src = batch["src"].to(device)
        pixels = batch["pixels"].to(device, non_blocking=True)
        out = None if buffer is None or buffer.shape[1:] != pixels.shape[1:] else buffer[: len(pixels)]
        args.append(prepare_batch(pixels, src, normalizer, input_size=input_size, out=out))
    if "features" in inputs:
        args.append(batch["features"].to(device))
    return args
