"""``ctcid predict``: a trained bundle applied to new samples, with per-cell calls and per-patient counts.

The input is an ingested dataset, or a raw export folder that is ingested on the fly into ``OUT/dataset``
with the options the model's training data was ingested with (channel map, layout, crop size, fit).
``OUT`` appears atomically and holds

``predictions.parquet`` / ``predictions.csv``
    ``cell_id``, ``sample_id``, ``label`` (when known), ``logit`` (raw), calibrated ``p_ctc``, ``call`` at the
    bundle's threshold, ``uncertainty`` (1 at the threshold, towards 0 far from it), ``qc_flags``, ``model_id``.
``counts.csv``
    Per sample: cells, ``called_ctc``, the ``expected`` and ``adjusted`` estimates with 95% intervals that
    include the calibration's and the error rates' uncertainty, ``ctc_estimate`` (the chosen estimator) and,
    with blood volumes, ``ctc_per_7_5ml`` (see :mod:`ctcid.evaluate.counts`); ``true_ctc`` when labels exist.
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

from .._runtime import Progress, launched_worker
from ..config import ConfigError
from ..errors import CtcidError, arg
from ..io import CellDataset, atomic_dir, atomic_write_text
from ..io.store import is_dataset
from .infer import bundle_logits

__all__ = ["REVIEW_FILE", "PredictResult", "predict", "sample_counts"]

#: The review decisions ``ctcid review`` keeps beside the predictions: an overwrite never deletes them.
REVIEW_FILE = "review.sqlite"


@dataclass
class PredictResult:
    out: Path
    predictions: pd.DataFrame
    counts: pd.DataFrame
    seconds: float


def sample_counts(
    ds: CellDataset,
    frame: pd.DataFrame,
    meta: Any,
    *,
    method: str | None = None,
    blood_volume_ml: float | None = None,
) -> pd.DataFrame:
    """Per-sample count table (:func:`ctcid.evaluate.count_table`) of predictions made with the bundle ``meta``.

    Blood volumes come from ``blood_volume_ml``, or else from a ``blood_volume_ml`` column of the dataset's
    cell table (a labels or manifest column carried by ingest).
    """
    from ..evaluate import ErrorRates, count_table

    rates = ErrorRates.from_metrics(meta.metrics) if meta.metrics.get("validation") else None
    if blood_volume_ml is None and "blood_volume_ml" in ds.table.columns:
        by_cell = ds.table.set_index(["sample_id", "cell_id"])["blood_volume_ml"]
        keys = pd.MultiIndex.from_arrays([frame["sample_id"], frame["cell_id"]])
        frame = frame.assign(blood_volume_ml=pd.to_numeric(by_cell.reindex(keys).to_numpy(), errors="coerce"))
    return count_table(frame, meta.calibration_map(), rates, method=method, blood_volume_ml=blood_volume_ml)


def _open_or_ingest(
    src: Path, tmp: Path, meta: Any, say: Callable[[str], None], progress: Callable[[int, int], None] | None
) -> CellDataset:
    if is_dataset(src):
        return CellDataset.open(src)
    if not src.is_dir():
        raise CtcidError("no such dataset or export folder", src)
    from ..io import IngestOptions, ingest

    rec = dict(meta.training.ingest)
    known = set(IngestOptions.__dataclass_fields__)
    opts = IngestOptions(**{k: v for k, v in rec.items() if k in known and k not in ("labels", "workers")})
    opts.size = int(meta.crop_size[0])
    opts.channels = None
    say(f"ingesting {src} with the model's ingest options (channel map {opts.channel_map or 'none'})")
    ingest(src, tmp / "dataset", opts, log=say, progress=progress)
    return CellDataset.open(tmp / "dataset")


def _ddp(strategy: str) -> str:
    return strategy if strategy.startswith("ddp") else "ddp"


def choose_engine(model: str | os.PathLike[str], engine: str, device: str, parallel: bool) -> tuple[Any, str]:
    """The loaded bundle and the engine it runs on: ``auto`` takes PyTorch on a GPU or for data-parallel runs,
    else the fastest engine verified for the bundle (:func:`ctcid.predict.onnx.verified_engines`)."""
    from .._runtime import resolve_device
    from ..models import load_bundle, read_meta
    from ..models.bundle import verify_bundle
    from ..models.registry import ARRAY_MODELS, TREE_MODELS
    from .onnx import ENGINES, load_onnx, verified_engines

    if engine not in ENGINES:
        raise ConfigError("engine", f"must be one of {', '.join(ENGINES)}, got {engine!r}", "--engine")
    meta = read_meta(model)
    if engine == "auto":
        gpu = device != "cpu" and resolve_device(device).type == "cuda"
        engine = (
            "torch"
            if gpu or parallel or meta.architecture in ARRAY_MODELS
            else verified_engines(model, meta.model_id)[0]
        )
    if parallel and engine != "torch":
        raise CtcidError(
            f"data-parallel prediction runs the PyTorch engine; pass {arg('engine', 'torch')} or one device"
        )
    if engine == "torch":
        arrays = "trees" if meta.architecture in TREE_MODELS else "linear"
        return load_bundle(model), (arrays if meta.architecture in ARRAY_MODELS else "torch")
    verify_bundle(model)  # the weights' sha256 and the metadata, before onnxruntime runs
    return load_onnx(model, int8=engine == "onnx-int8"), engine


def _logits(bundle: Any, ds: CellDataset, parallel: bool, opts: dict[str, Any], progress: Any, say: Any) -> Any:
    cells = np.arange(len(ds))
    if not parallel:
        update = None if progress is None else (lambda done, total: progress(done, total, "predict"))
        return bundle_logits(
            bundle, ds, cells, batch_size=opts["batch_size"], device=opts["device"], progress=update
        )
    from .distributed import distributed_logits

    say(f"data-parallel prediction over {opts['devices']} device(s) x {opts['num_nodes']} node(s)")
    return distributed_logits(
        bundle,
        ds,
        cells,
        devices=opts["devices"],
        strategy=_ddp(opts["strategy"]),
        num_nodes=opts["num_nodes"],
        device=opts["device"],
        batch_size=opts["batch_size"],
    )


def _frame(ds: CellDataset, logits: np.ndarray, meta: Any) -> pd.DataFrame:
    from ..evaluate import predictions_frame

    frame = predictions_frame(
        ds, np.arange(len(ds)), logits, meta.calibration_map(), meta.threshold, meta.model_id
    )
    if "features" in meta.inputs:
        from ..features import load_segmentation

        flags = load_segmentation(ds).flags.to_numpy()
        frame["qc_flags"] = [";".join(filter(None, (a, b))) for a, b in zip(frame["qc_flags"], flags, strict=True)]
    return frame


def _record(tmp: Path, ds: CellDataset, frame: pd.DataFrame, counts: pd.DataFrame, meta: Any, info: dict) -> None:
    from ..io.store import package_versions

    seconds = info["seconds"]
    info.update(
        {
            "dataset": str(ds.path) if ds.path.parent != tmp else "dataset",
            "dataset_fingerprint": ds.fingerprint,
            "cells": len(frame),
            "samples": int(frame["sample_id"].nunique()),
            "predicted_ctc": int((frame["call"] == "ctc").sum()),
            "threshold": meta.threshold,
            "calibration": meta.calibration.to_dict(),
            "count_method": str(counts["count_method"].iloc[0]) if len(counts) else None,
            "cells_per_s": round(len(frame) / seconds, 1) if seconds > 0 else None,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
        }
    )
    frame.to_parquet(tmp / "predictions.parquet", index=False)
    atomic_write_text(tmp / "predictions.csv", frame.to_csv(index=False))
    atomic_write_text(tmp / "counts.csv", counts.to_csv(index=False))
    atomic_write_text(tmp / "predict.json", json.dumps(info, indent=2) + "\n")


def predict(
    model: str | os.PathLike[str],
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    engine: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    count_method: str | None = None,
    blood_volume_ml: float | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> PredictResult | None:
    """Apply the bundle ``model`` to ``src`` (dataset or raw export) and write ``out`` (see the module doc).

    ``engine="auto"`` runs the fastest engine verified for the bundle (INT8 ONNX, then FP32 ONNX, then PyTorch;
    PyTorch on a GPU) and says which. With ``devices`` > 1 (or ``strategy="ddp"``, or several nodes) the cells
    are shared among data-parallel processes (see :mod:`ctcid.predict.distributed`); the first process writes
    ``out``, the others return ``None``.
    """
    from ..evaluate import COUNT_METHODS
    from ..models import check_compatible

    say = log or (lambda _m: None)
    if count_method is not None and count_method not in COUNT_METHODS:
        raise ConfigError(
            "count_method", f"must be one of {', '.join(COUNT_METHODS)}, got {count_method!r}", "--count-method"
        )
    if blood_volume_ml is not None and not blood_volume_ml > 0:
        raise ConfigError(
            "blood_volume_ml", f"must be a positive volume in mL, got {blood_volume_ml}", "--blood-volume-ml"
        )
    src = Path(src)
    parallel = str(devices) not in ("1", "auto") or num_nodes > 1 or strategy.startswith("ddp")
    if parallel and not is_dataset(src):
        raise CtcidError("data-parallel prediction reads an ingested dataset; run `ctcid ingest` first", src)
    bundle, used = choose_engine(model, engine, device, parallel)
    meta = bundle.meta
    opts = {
        "batch_size": batch_size,
        "device": device,
        "devices": devices,
        "strategy": strategy,
        "num_nodes": num_nodes,
    }
    if parallel and launched_worker():  # a worker process: compute its share, write nothing
        ds = CellDataset.open(src)
        check_compatible(meta, ds)
        _logits(bundle, ds, True, opts, None, say)
        return None
    if overwrite and (Path(out) / REVIEW_FILE).exists():
        raise CtcidError(
            f"holds review decisions ({REVIEW_FILE}), which {arg('overwrite')} would delete; write the "
            "predictions to another folder, or move the folder away first",
            out,
        )
    say(f"engine: {used}")
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        ingest_progress = None if progress is None else (lambda done, total: progress(done, total, "ingest"))
        ds = _open_or_ingest(src, tmp, meta, say, ingest_progress)
        check_compatible(meta, ds)
        frame = _frame(ds, _logits(bundle, ds, parallel, opts, progress, say), meta)
        counts = sample_counts(ds, frame, meta, method=count_method, blood_volume_ml=blood_volume_ml)
        seconds = time.perf_counter() - t0
        info = {
            "model_id": meta.model_id,
            "model": str(Path(model).resolve()),
            "engine": used,
            "devices": devices,
            "num_nodes": num_nodes,
            "input": str(src.resolve()),
            "seconds": round(seconds, 2),
        }
        _record(tmp, ds, frame, counts, meta, info)
    return PredictResult(Path(out), frame, counts, seconds)
