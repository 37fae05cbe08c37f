"""``ctcid bench predict``: prediction cells/s end to end against model-only inference, in one run.

One generated cohort is both written as a raw export and ingested. A model bundle (untrained weights:
speed does not depend on them) is then timed

* model only: random tensors already on the device, forward passes in inference mode;
* end to end from the dataset store: ``ctcid predict`` (store -> batches -> scaling -> model -> tables);
* end to end from the raw export: ``ctcid predict`` including the on-the-fly ingest;
* on CPU also: the bundle exported and checked as ``ctcid train`` does (FP32 ONNX and a verified INT8 copy),
  onnxruntime FP32 and INT8 model only, ``predict --engine onnx`` and ``predict`` with its default engine
  (the fastest verified one) from the store.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["bench_predict"]

#: The channels of the generated cohort, in bundle order.
CHANNELS = ("BF", "DAPI", "CK", "CD45")


#: Timed calls of each engine path and of its model-only rate, after a warm-up (``timeit``'s default repeat).
REPEATS = 5


def _rate(n: int, fn: Any, repeats: int = 1) -> float:
    """Items per second of ``fn`` (which handles ``n`` items): after a warm-up, the best of ``repeats`` timed
    calls, as ``timeit`` advises, so that a moment of load from elsewhere does not decide a ratio."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times)


def bench_predict(
    model: str = "resnet34",
    cells: int = 1000,
    size: int = 80,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Time prediction paths on a generated 4-channel cohort (see the module docstring)."""
    import torch

    from .._runtime import autocast_dtype, resolve_device
    from .ingest import machine_info

    dev = resolve_device(device)
    amp = autocast_dtype(dev, precision)
    result: dict[str, Any] = {
        "benchmark": "predict",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "model": model,
        "input_size": size,
        "batch_size": batch_size,
        "precision": "bf16" if amp == torch.bfloat16 else ("fp16" if amp == torch.float16 else "fp32"),
    }
    with tempfile.TemporaryDirectory(prefix="ctcid-bench-") as tmp:
        tmp = Path(tmp)
        ds, net = _cohort_and_bundle(tmp, model, cells, size, seed)
        n = len(ds)
        result["cells"] = n

        x = torch.randn(batch_size, len(CHANNELS), size, size, device=dev)
        net = net.to(dev)
        if dev.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        torch_only, store, raw = _torch_rates(tmp, net, x, n, dev, amp)
        result.update(
            {
                "torch_model_only_cells_per_s": round(torch_only, 1),
                "end_to_end_from_store_cells_per_s": round(store, 1),
                "end_to_end_from_raw_export_cells_per_s": round(raw, 1),
                "ratio_store_vs_model_only": round(store / torch_only, 3),
            }
        )
        if dev.type == "cpu":
            result.update(_onnx_rates(tmp, ds, x, torch_only))
        else:
            result["targets"] = {"store_vs_model_only": 0.85}
    return result


def _cohort_and_bundle(tmp: Path, model: str, cells: int, size: int, seed: int) -> tuple[Any, torch.nn.Module]:
    """Generate a cohort as a raw export in ``tmp/export``, ingest it to ``tmp/ds`` and save an untrained bundle
    of ``model`` to ``tmp/model``; return the dataset and the network."""
    import torch

    from ..data import channel_normalisation
    from ..io import CellDataset, IngestOptions, ingest
    from ..models import BundleMeta, TrainingRecord, create_model, save_bundle
    from ..synth import SynthConfig, generate_cohort

    patients = max(1, cells // 200)
    cfg = SynthConfig(patients=patients, cells_per_patient=max(1, cells // patients), seed=seed, size=size)
    (tmp / "export").mkdir()
    generate_cohort(tmp / "export", cfg)
    ingest(tmp / "export", tmp / "ds", IngestOptions())
    ds = CellDataset.open(tmp / "ds")
    torch.manual_seed(seed)  # the same stand-in weights, and so the same INT8 check, in every run
    net = create_model(model, in_chans=len(CHANNELS)).eval()
    norm = channel_normalisation(ds, list(CHANNELS), ["BF"])
    samples = sorted(set(ds.table["sample_id"]))
    meta = BundleMeta(
        architecture=model,
        channels=list(CHANNELS),
        normalisation=norm,
        crop_size=list(ds.crop_size),
        input_size=size,
        pixel_size_um=ds.pixel_size_um,
        training=TrainingRecord(
            ingest=dict(ds.header.get("ingest", {})), train_samples=samples, val_samples=samples
        ),
    )
    save_bundle(tmp / "model", net, meta)
    return ds, net


def _torch_rates(
    tmp: Path, net: torch.nn.Module, x: torch.Tensor, n: int, dev: torch.device, amp: torch.dtype | None
) -> tuple[float, float, float]:
    """Cells/s of the network alone on the random batch ``x`` already on the device, and of ``predict`` from the
    dataset store and from the raw export."""
    import torch

    from ..predict import predict

    batch_size = len(x)

    def model_only() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            for _ in range(max(1, n // batch_size)):
                net(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    torch_only = _rate(max(1, n // batch_size) * batch_size, model_only, repeats=3)
    store = _rate(
        n,
        lambda: predict(
            tmp / "model", tmp / "ds", tmp / "p1", batch_size=batch_size, device=str(dev.type), overwrite=True
        ),
    )
    raw = _rate(
        n,
        lambda: predict(
            tmp / "model", tmp / "export", tmp / "p2", batch_size=batch_size, device=str(dev.type), overwrite=True
        ),
    )
    return torch_only, store, raw


def _onnx_rates(tmp: Path, ds: Any, x: torch.Tensor, torch_only: float) -> dict[str, Any]:
    """On the CPU: the bundle exported and checked as ``ctcid train`` does (FP32 ONNX and INT8), onnxruntime model
    only for both, and ``predict`` from the store with ``--engine onnx`` and with the default engine (``auto``:
    the fastest verified one), with their ratios and targets."""
    from ..errors import CtcidError
    from ..export import export_onnx
    from ..export.onnx import quantise_onnx
    from ..predict import predict
    from ..predict.onnx import INT8_FILE, ONNX_FILE, OnnxModel

    n, batch_size = len(ds), len(x)
    xs = x.cpu().numpy()
    int8_path = tmp / "model" / INT8_FILE
    try:
        export = export_onnx(tmp / "model", int8=True, dataset=ds)
    except CtcidError:  # the INT8 check refused it, as training would: predict's default engine is then FP32
        export = json.loads((tmp / "model" / "export.json").read_text())
        int8_path = quantise_onnx(tmp / "model" / ONNX_FILE, tmp / "unverified.int8.onnx", {"image": xs}, tmp)
    reps = max(1, n // batch_size)

    def ort_rate(path: Path) -> float:
        gc.collect()  # no idle session of an earlier step keeps its threads busy
        session = OnnxModel(path, ("image",)).session
        rate = _rate(
            reps * batch_size, lambda: [session.run(None, {"image": xs}) for _ in range(reps)], repeats=REPEATS
        )
        session = None  # closed before the next step
        gc.collect()
        return rate

    def predict_rate(engine: str, out: str) -> float:
        return _rate(
            n,
            lambda: predict(
                tmp / "model", tmp / "ds", tmp / out, engine=engine, batch_size=batch_size, overwrite=True
            ),
            repeats=REPEATS,
        )

    ort_fp32 = ort_rate(tmp / "model" / ONNX_FILE)
    ort_int8 = ort_rate(int8_path)  # timed even when not verified; predict only uses a verified one
    onnx_store = predict_rate("onnx", "p3")
    default_store = predict_rate("auto", "p4")
    used = json.loads((tmp / "p4" / "predict.json").read_text())["engine"]
    fastest = ort_int8 if used == "onnx-int8" else ort_fp32
    return {
        "onnxruntime_fp32_model_only_cells_per_s": round(ort_fp32, 1),
        "onnxruntime_int8_model_only_cells_per_s": round(ort_int8, 1),
        "onnx_end_to_end_from_store_cells_per_s": round(onnx_store, 1),
        "default_engine": used,
        "int8_check": export.get("int8"),
        "default_end_to_end_from_store_cells_per_s": round(default_store, 1),
        "ratio_onnxruntime_vs_torch_eager": round(ort_fp32 / torch_only, 3),
        "ratio_onnx_store_vs_onnxruntime_model_only": round(onnx_store / ort_fp32, 3),
        "ratio_int8_vs_fp32": round(ort_int8 / ort_fp32, 3),
        "ratio_default_store_vs_fastest_model_only": round(default_store / fastest, 3),
        "targets": {
            "onnx_store_vs_onnxruntime_model_only": 0.90,
            "int8_vs_fp32": 1.8,
            "default_store_vs_fastest_model_only": 0.90,
        },
    }
