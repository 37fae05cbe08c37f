"""``ctcid predict``: a trained bundle applied to new samples, with per-cell calls and per-patient counts.

The input is an ingested dataset, or a raw export folder that is ingested on the fly into ``OUT/dataset``
with the options the model's training data was ingested with (channel map, layout, crop size, fit).
``OUT`` appears atomically and holds

``predictions.parquet`` / ``predictions.csv``
    ``cell_id``, ``sample_id``, ``label`` (when known), ``logit``, calibrated ``p_ctc``, ``call`` at the
    bundle's threshold, ``uncertainty`` (1 at p = 0.5, 0 at 0 or 1), ``qc_flags``, ``model_id``.
``counts.csv``
    Per sample: cells, predicted CTCs (calls), the expected CTC count (sum of ``p_ctc``) with a 95% interval
    (normal approximation of the Poisson-binomial count), and the true count when labels exist.
``predict.json``
    Model id, engine, dataset fingerprint, timings and versions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CtcidError
from ..io import CellDataset
from ..io.store import is_dataset

__all__ = ["PredictResult", "expected_counts", "predict"]


@dataclass
class PredictResult:
    out: Path
    predictions: pd.DataFrame
    counts: pd.DataFrame
    seconds: float


def expected_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-sample counts from per-cell predictions (``sample_id``, ``p_ctc``, ``call``, optional ``label``).

    The number of CTCs among independent cells with probabilities ``p_i`` is Poisson-binomial: mean
    ``sum p_i``, variance ``sum p_i (1 - p_i)``; the interval is mean ± 1.96 sd, clipped to [0, cells].
    """
    rows = []
    for sample, g in frame.groupby("sample_id", sort=True):
        p = g["p_ctc"].to_numpy(dtype=np.float64)
        mean = float(p.sum())
        sd = float(np.sqrt((p * (1 - p)).sum()))
        row: dict[str, Any] = {
            "sample_id": sample,
            "cells": len(g),
            "predicted_ctc": int((g["call"] == "ctc").sum()),
            "expected_ctc": round(mean, 3),
            "expected_ctc_lo": round(max(0.0, mean - 1.96 * sd), 3),
            "expected_ctc_hi": round(min(float(len(g)), mean + 1.96 * sd), 3),
        }
        if "label" in g and g["label"].isin(["ctc", "wbc"]).any():
            row["true_ctc"] = int((g["label"] == "ctc").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _open_or_ingest(
    src: Path, tmp: Path, meta: Any, say: Callable[[str], None], progress: Callable[[int, int], None] | None
) -> CellDataset:
    if is_dataset(src):
        return CellDataset.open(src)
    if not src.is_dir():
        raise CtcidError("no such dataset or export folder", src)
    from ..io import IngestOptions, ingest

    rec = dict(meta.training.get("ingest") or {})
    known = set(IngestOptions.__dataclass_fields__)
    opts = IngestOptions(**{k: v for k, v in rec.items() if k in known and k not in ("labels", "workers")})
    opts.size = int(meta.crop_size[0])
    opts.channels = None
    say(f"ingesting {src} with the model's ingest options (channel map {opts.channel_map or 'none'})")
    ingest(src, tmp / "dataset", opts, log=say, progress=progress)
    return CellDataset.open(tmp / "dataset")


def _ddp(strategy: str) -> str:
    return strategy if strategy.startswith("ddp") else "ddp"


def predict(
    model: str | os.PathLike[str],
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    engine: str = "torch",
    batch_size: int = 256,
    device: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    progress: Callable[[str, int], Callable[[int, int], None]] | None = None,
) -> PredictResult | None:
    """Apply the bundle ``model`` to ``src`` (dataset or raw export) and write ``out`` (see the module doc).

    With ``devices`` > 1 (or ``strategy="ddp"``, or several nodes) the cells are shared among data-parallel
    processes (see :mod:`ctcid.predict.distributed`); the first process writes ``out``, the others return
    ``None``.
    """
    from ..io import atomic_dir, atomic_write_text
    from ..io.store import package_versions
    from ..models import check_compatible, load_bundle
    from ..train.engine import predictions_frame
    from .infer import bundle_logits

    say = log or (lambda _m: None)
    if engine not in ("torch", "onnx"):
        raise CtcidError(f"--engine must be torch or onnx, got {engine!r}")
    if engine == "onnx":
        from ..export import load_onnx
        from ..models.bundle import verify_bundle

        verify_bundle(model)  # the weights' sha256 and the metadata, before onnxruntime runs
        bundle = load_onnx(model)
    else:
        bundle = load_bundle(model)
    meta = bundle.meta
    src = Path(src)
    parallel = str(devices) not in ("1", "auto") or num_nodes > 1 or strategy.startswith("ddp")
    if parallel and engine != "torch":
        raise CtcidError("data-parallel prediction runs the PyTorch engine; drop --engine onnx or --devices")
    if parallel and not is_dataset(src):
        raise CtcidError("data-parallel prediction reads an ingested dataset; run `ctcid ingest` first", src)
    from ..train.engine import _launched_worker

    if parallel and _launched_worker():  # a worker process: compute its share, write nothing
        from .distributed import distributed_logits

        ds = CellDataset.open(src)
        check_compatible(meta, ds)
        distributed_logits(
            bundle,
            ds,
            np.arange(len(ds)),
            devices=devices,
            strategy=_ddp(strategy),
            num_nodes=num_nodes,
            device=device,
            batch_size=batch_size,
        )
        return None
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        ds = _open_or_ingest(src, tmp, meta, say, progress("ingest", 0) if progress else None)
        check_compatible(meta, ds)
        cells = np.arange(len(ds))
        update = progress("predict", len(cells)) if progress else None
        if parallel:
            from .distributed import distributed_logits

            say(f"data-parallel prediction over {devices} device(s) x {num_nodes} node(s)")
            logits = distributed_logits(
                bundle,
                ds,
                cells,
                devices=devices,
                strategy=_ddp(strategy),
                num_nodes=num_nodes,
                device=device,
                batch_size=batch_size,
            )
        else:
            logits = bundle_logits(bundle, ds, cells, batch_size=batch_size, device=device, progress=update)
        frame = predictions_frame(ds, cells, logits, meta.temperature, meta.threshold, meta.model_id)
        if "features" in meta.inputs:
            from ..features import load_segmentation

            flags = load_segmentation(ds).flags.to_numpy()
            frame["qc_flags"] = [
                ";".join(filter(None, (a, b))) for a, b in zip(frame["qc_flags"], flags, strict=True)
            ]
        counts = expected_counts(frame)
        frame.to_parquet(tmp / "predictions.parquet", index=False)
        atomic_write_text(tmp / "predictions.csv", frame.to_csv(index=False))
        atomic_write_text(tmp / "counts.csv", counts.to_csv(index=False))
        seconds = time.perf_counter() - t0
        info = {
            "model_id": meta.model_id,
            "model": str(Path(model).resolve()),
            "engine": engine,
            "devices": devices,
            "num_nodes": num_nodes,
            "input": str(src.resolve()),
            "dataset": str(ds.path) if ds.path.parent != tmp else "dataset",
            "dataset_fingerprint": ds.fingerprint,
            "cells": len(frame),
            "samples": int(frame["sample_id"].nunique()),
            "predicted_ctc": int((frame["call"] == "ctc").sum()),
            "threshold": meta.threshold,
            "temperature": meta.temperature,
            "seconds": round(seconds, 2),
            "cells_per_s": round(len(frame) / seconds, 1) if seconds > 0 else None,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
        }
        atomic_write_text(tmp / "predict.json", json.dumps(info, indent=2) + "\n")
    return PredictResult(Path(out), frame, counts, seconds)
