"""ONNX export of a model bundle and an optional statically quantised INT8 copy, both checked against PyTorch.

The ONNX graph takes what the network takes: the windowed, resized and standardised image batch
(``image``, float32 ``[B, C, S, S]``) and, for feature models, the raw feature vector (``features``); the
scaling in front of it is ctcid's, exactly as for PyTorch, so both engines see the same tensors. The
bundle's ``model.json`` is embedded in the file's metadata (``ctcid_model_json``).

INT8 uses onnxruntime's static quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated
on training cells; the F1 of the CTC class on the validation cells is compared with FP32 at the bundle's
threshold, recorded in ``export.json``, and the INT8 model is refused when it differs by more than 0.005.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CtcidError, arg
from ..predict.onnx import INT8_FILE, ONNX_FILE, OnnxModel

__all__ = ["INT8_F1_TOLERANCE", "export_onnx", "quantise_onnx"]

#: Largest F1 difference (CTC class, validation cells) allowed between INT8 and FP32.
INT8_F1_TOLERANCE = 0.005


def _export(model: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    """torch.export-based ONNX export with a dynamic batch axis, written as one self-contained file."""
    import inspect

    import onnx
    from onnx.external_data_helper import convert_model_from_external_data

    batch = torch.export.Dim("batch", min=1)
    params = list(inspect.signature(model.forward).parameters)
    shapes = {p: {0: batch} for p in params[: len(example)]}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=names,
            output_names=["logit"],
            dynamic_shapes=shapes,
            dynamo=True,
        )
    proto = onnx.load(str(path))  # weights the exporter put beside the graph come back inline
    convert_model_from_external_data(proto)
    onnx.save(proto, str(path))
    for extra in path.parent.glob(path.name + ".data"):
        extra.unlink()


def _embed_metadata(path: Path, meta_json: str, model_id: str) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in (("ctcid_model_json", meta_json), ("ctcid_model_id", model_id)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _inputs_of(bundle: Any, ds: Any, cells: np.ndarray) -> list[np.ndarray]:
    """The tensors the network receives for ``cells``, as the PyTorch path prepares them."""
    from ..predict.infer import bundle_inputs

    return bundle_inputs(bundle, ds, cells)


def export_onnx(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    int8: bool = False,
    dataset: str | os.PathLike[str] | Any | None = None,
    calibration_cells: int = 256,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Write ``model.onnx`` (and with ``int8`` ``model.int8.onnx``) for a bundle; return what was checked.

    ``dataset`` (a folder or an open dataset; default: the training dataset recorded in the bundle) supplies real
    cells for the parity check and, for INT8, the calibration (training patients) and validation cells.
    """
    import onnxruntime  # noqa: F401  (fail early with a clear error when missing)

    from ..io import CellDataset
    from ..io._atomic import atomic_write_bytes, atomic_write_text
    from ..models import LinearModel, TreeEnsemble, load_bundle

    model_dir = Path(model_dir)
    bundle = load_bundle(model_dir)
    meta = bundle.meta
    if isinstance(bundle.model, TreeEnsemble | LinearModel):
        raise CtcidError(
            f"{meta.architecture} is already stored as portable arrays; ONNX export covers the networks", model_dir
        )
    target = Path(out) if out else model_dir / ONNX_FILE
    if target.exists() and not overwrite:
        raise CtcidError(f"already exists; pass {arg('overwrite')}", target)
    if isinstance(dataset, CellDataset):
        ds = dataset
    else:
        ds_path = Path(dataset) if dataset else Path(meta.training.dataset)
        from ..io.store import is_dataset

        if not is_dataset(ds_path):
            raise CtcidError(
                f"the export checks the model on real cells: pass {arg('dataset', ...)} (the training dataset was "
                "not found)",
                ds_path,
            )
        ds = CellDataset.open(ds_path)
    from ..models import check_compatible

    check_compatible(meta, ds)
    model = bundle.model.eval()
    names = [n for n in ("image", "features") if n in meta.inputs]
    sample_ids = ds.table["sample_id"].to_numpy()
    labels = ds.labels()
    rng = np.random.default_rng(0)
    check_cells = np.sort(rng.choice(len(ds), size=min(len(ds), 128), replace=False))
    feeds = _inputs_of(bundle, ds, check_cells)
    example = tuple(torch.from_numpy(a[:2]) for a in feeds)
    report: dict[str, Any] = {"model_id": meta.model_id, "inputs": names, "onnx": str(target)}
    with tempfile.TemporaryDirectory(prefix="ctcid-onnx-") as tmpdir:
        tmp = Path(tmpdir)
        _export(model, example, names, tmp / "fp32.onnx")
        _embed_metadata(tmp / "fp32.onnx", meta.to_json(), meta.model_id)
        ort_model = OnnxModel(tmp / "fp32.onnx", tuple(meta.inputs))
        with torch.no_grad():
            ref = model(*[torch.from_numpy(a) for a in feeds]).reshape(-1).numpy()
        got = ort_model(*[torch.from_numpy(a) for a in feeds]).reshape(-1).numpy()
        report["parity_max_abs_logit_diff"] = float(np.abs(ref - got).max())
        report["parity_cells"] = len(check_cells)
        atomic_write_bytes(target, (tmp / "fp32.onnx").read_bytes())
        if int8:
            int8_report = _quantise(tmp, meta, ds, bundle, names, sample_ids, labels, calibration_cells)
            report.update(int8_report)
            if not int8_report["int8"]["accepted"]:
                atomic_write_text(target.with_name("export.json"), json.dumps(report, indent=2) + "\n")
                r = int8_report["int8"]
                raise CtcidError(
                    f"INT8 model changes validation F1 from {r['f1_fp32']:.4f} to {r['f1_int8']:.4f} (more than "
                    f"{INT8_F1_TOLERANCE}); not written (model.onnx, FP32, was). Calibrate on more cells "
                    f"({arg('calibration_cells', ...)}) or use the FP32 model",
                    target.with_name(INT8_FILE),
                )
            atomic_write_bytes(target.with_name(INT8_FILE), (tmp / "int8.onnx").read_bytes())
    atomic_write_text(target.with_name("export.json"), json.dumps(report, indent=2) + "\n")
    return report


def quantise_onnx(fp32: Path, int8: Path, calibration: dict[str, np.ndarray], workdir: Path) -> Path:
    """Static INT8 quantisation (QDQ, per-channel int8 weights, uint8 activations) with onnxruntime,
    calibrated on ``calibration`` (input name -> float32 batch of real inputs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    n = len(next(iter(calibration.values())))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{k: v[i : i + 32] for k, v in calibration.items()} for i in range(0, n, 32)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    pre = workdir / "pre.onnx"
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(int8),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    return int8


def _quantise(
    tmp: Path,
    meta: Any,
    ds: Any,
    bundle: Any,
    names: list[str],
    sample_ids: np.ndarray,
    labels: np.ndarray,
    calibration_cells: int,
) -> dict[str, Any]:
    train = np.flatnonzero(np.isin(sample_ids, meta.training.train_samples))
    val = np.flatnonzero(np.isin(sample_ids, meta.training.val_samples) & (labels >= 0))
    if len(train) == 0 or len(val) == 0 or not (labels[val] == 1).any():
        raise CtcidError(
            "INT8 calibration needs the training dataset with the bundle's training and validation patients",
            ds.path,
        )
    rng = np.random.default_rng(0)
    calib = np.sort(rng.choice(train, size=min(len(train), calibration_cells), replace=False))
    feeds = _inputs_of(bundle, ds, calib)

    quantise_onnx(tmp / "fp32.onnx", tmp / "int8.onnx", dict(zip(names, feeds, strict=True)), tmp)
    _embed_metadata(tmp / "int8.onnx", meta.to_json(), meta.model_id)
    vfeeds = [torch.from_numpy(a) for a in _inputs_of(bundle, ds, val)]
    y = labels[val].astype(int)

    def f1(model: nn.Module) -> float:
        logits = model(*vfeeds).reshape(-1).detach().numpy()
        pred = meta.probabilities(logits) >= meta.threshold
        tp = float((pred & (y == 1)).sum())
        return 2 * tp / max(1.0, float(pred.sum() + (y == 1).sum()))

    f1_fp32 = f1(OnnxModel(tmp / "fp32.onnx", tuple(meta.inputs)))
    f1_int8 = f1(OnnxModel(tmp / "int8.onnx", tuple(meta.inputs)))
    out = {
        "int8": {
            "calibration_cells": len(calib),
            "validation_cells": len(val),
            "f1_fp32": f1_fp32,
            "f1_int8": f1_int8,
            "f1_difference": abs(f1_int8 - f1_fp32),
            "tolerance": INT8_F1_TOLERANCE,
            "accepted": abs(f1_int8 - f1_fp32) <= INT8_F1_TOLERANCE,
        }
    }
    return out
