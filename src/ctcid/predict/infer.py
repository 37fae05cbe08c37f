"""Batched inference from the packed store: logits for any set of cells, bounded memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .._runtime import autocast_dtype, resolve_device
from ..data import BatchPlan, Normalizer, StoreBatches, feature_matrix, network_inputs
from ..io import CellDataset

__all__ = ["bundle_features", "bundle_inputs", "bundle_logits", "infer_bundle", "infer_logits"]


@torch.inference_mode()
def infer_logits(
    model: nn.Module,
    ds: CellDataset,
    cells: np.ndarray,
    *,
    channels: list[str],
    normalisation: dict[str, dict[str, float]],
    input_size: int,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    features: np.ndarray | None = None,
    call: Callable[[nn.Module, list[torch.Tensor]], torch.Tensor] | None = None,
    prefetch: bool | None = None,
) -> np.ndarray:
    """One logit per cell of ``cells`` (rows of ``ds``), in that order.

    Pixels go from the store to the device as uint16 and are windowed, resized and standardised
    there, exactly as during training. A model that reads hand-crafted features (``model.inputs``)
    gets the rows of ``features`` (``[len(ds), F]``) too. ``call(model, inputs)`` replaces the forward
    pass (e.g. to read an embedding ``[B, D]``); the result then has one row per cell. With ``prefetch`` the next
    batch is read and prepared in a second thread while the model runs; by default only when the model does not
    run on PyTorch's CPU threads (an onnxruntime session, or a GPU): on those threads the two only take turns.
    """
    dev = resolve_device(device) if isinstance(device, str) else device
    cells = np.asarray(cells, dtype=np.int64)
    if len(cells) == 0:
        return np.zeros(0, np.float32)
    src = ds.channel_index(channels)
    samples = np.column_stack([cells, np.tile(np.asarray(src, np.int64), (len(cells), 1))])
    plan = BatchPlan(samples, np.zeros(len(ds), np.int8), batch_size, shuffle=False, balanced=False, seed=0)
    inputs = tuple(getattr(model, "inputs", ("image",)))
    if "features" in inputs and features is None:
        raise ValueError("this model reads features; pass the feature matrix")
    batches = StoreBatches(ds, plan, src, features=features, images="image" in inputs, preload=False)
    norm = Normalizer(normalisation, ds.channels).to(dev)
    model = model.to(dev).eval()
    amp = autocast_dtype(dev, precision)
    out: np.ndarray | None = None
    done = 0

    # two reused input buffers: batch b is prepared into one while the model reads batch b - 1 from the other
    crop = tuple(ds.crop_size)
    buffers = [
        torch.empty((batch_size, len(src), *crop), dtype=torch.float32, device=dev) if "image" in inputs else None
        for _ in range(2)
    ]

    @torch.inference_mode()
    def prepare(b: int) -> list[torch.Tensor]:
        return network_inputs(batches[b], norm, input_size, inputs, dev, buffer=buffers[b % 2])

    # the next batch is read and prepared in a second thread while the model runs on this one
    own_threads = getattr(model, "owns_cpu", False)  # an onnxruntime session
    if prefetch is None:
        prefetch = dev.type != "cpu" or own_threads
    with ThreadPoolExecutor(max_workers=1) as pool, _torch_threads(1 if own_threads else 0):
        pending = pool.submit(prepare, 0) if prefetch else None
        for b in range(len(batches)):
            args = pending.result() if pending is not None else prepare(b)
            if pending is not None and b + 1 < len(batches):
                pending = pool.submit(prepare, b + 1)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = (model(*args).reshape(-1) if call is None else call(model, args)).float()
            if out is None:
                out = np.empty((len(cells), *logits.shape[1:]), np.float32)
            out[done : done + len(logits)] = logits.cpu().numpy()
            done += len(logits)
            if progress:
                progress(done, len(cells))
    assert out is not None
    return out


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` inside the block (0: left as they are). An engine with its own
    thread pool (onnxruntime) runs while the next batch is prepared; PyTorch's idle threads, which spin before
    they sleep, would take cores from it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def infer_bundle(bundle: object, ds: CellDataset, cells: np.ndarray, **kw: object) -> np.ndarray:
    """:func:`infer_logits` for a loaded bundle: channels, scaling and input size from its metadata."""
    meta = bundle.meta  # type: ignore[attr-defined]
    return infer_logits(
        bundle.model,  # type: ignore[attr-defined]
        ds,
        cells,
        channels=meta.channels,
        normalisation=meta.normalisation,
        input_size=meta.input_size,
        **kw,  # type: ignore[arg-type]
    )


def bundle_features(meta: object, ds: CellDataset) -> np.ndarray | None:
    """The feature matrix ``[len(ds), F]`` a feature model reads (``None`` for an image-only model).

    Features come from the dataset's cache, measured with the options recorded in the bundle (computed
    and cached first when missing).
    """
    if "features" not in meta.inputs:  # type: ignore[attr-defined]
        return None
    spec = meta.features  # type: ignore[attr-defined]
    return feature_matrix(ds, spec.segmentation, spec.config, names=spec.names)[0]


def bundle_inputs(bundle: object, ds: CellDataset, cells: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """The float32 tensors a bundle's network receives for ``cells``: the prepared image batch and/or features."""
    meta = bundle.meta  # type: ignore[attr-defined]
    features = bundle_features(meta, ds)
    cells = np.asarray(cells, np.int64)
    out = []
    if "image" in meta.inputs:
        out.append(
            infer_bundle(
                bundle, ds, cells, batch_size=batch_size, device="cpu", features=features, call=lambda _m, a: a[0]
            )
        )
    if features is not None:
        out.append(np.ascontiguousarray(features[cells]))
    return out


def bundle_logits(
    bundle: object,
    ds: CellDataset,
    cells: np.ndarray,
    *,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Logits of a loaded bundle (:func:`ctcid.models.load_bundle`) for ``cells`` of ``ds``, whatever its kind.

    Feature models get their features from the dataset's cache (see :func:`bundle_features`).
    """
    from ..models import LinearModel, TreeEnsemble

    meta = bundle.meta  # type: ignore[attr-defined]
    model = bundle.model  # type: ignore[attr-defined]
    features = bundle_features(meta, ds)
    if isinstance(model, TreeEnsemble | LinearModel):
        cells = np.asarray(cells, np.int64)
        out = model.decision_function(features[cells]).astype(np.float32)
        if progress:
            progress(len(cells), len(cells))
        return out
    return infer_bundle(
        bundle,
        ds,
        cells,
        batch_size=batch_size,
        device=device,
        precision=precision,
        progress=progress,
        features=features,
    )
