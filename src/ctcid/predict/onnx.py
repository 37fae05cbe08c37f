"""Running an exported bundle in onnxruntime (``ctcid export`` writes ``model.onnx`` and ``model.int8.onnx``).

The graph takes what the network takes (the prepared image batch, and the feature vector for feature models), so
prediction prepares the inputs with ctcid's code for both engines and the two cannot disagree on the scaling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CtcidError

__all__ = ["ENGINES", "EXPORT_FILE", "INT8_FILE", "ONNX_FILE", "OnnxModel", "load_onnx", "verified_engines"]

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
#: The record of ``ctcid export``: parity of the ONNX model with PyTorch, and the INT8 model's check.
EXPORT_FILE = "export.json"
#: Largest logit difference between the ONNX and the PyTorch model for the ONNX model to count as verified.
PARITY_TOLERANCE = 1e-3
#: Prediction engines; ``auto`` takes the fastest one verified for the bundle (see :func:`verified_engines`).
ENGINES = ("auto", "torch", "onnx", "onnx-int8")


class OnnxModel(nn.Module):
    """An onnxruntime session behind the interface of the PyTorch models (CPU tensors in, logits out)."""

    #: The session runs on its own thread pool; PyTorch, which only prepares the batches, keeps off the cores.
    owns_cpu = True

    def __init__(self, path: str | os.PathLike[str], inputs: tuple[str, ...], threads: int = 0):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        # ctcid prepares the next batch between runs: idle threads should sleep, not spin against it
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CtcidError(f"onnxruntime cannot load the model ({str(exc).splitlines()[0]})", path) from None
        self.inputs = inputs
        self.names = [i.name for i in self.session.get_inputs()]

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        feed = {n: a.detach().cpu().float().numpy() for n, a in zip(self.names, args, strict=True)}
        return torch.from_numpy(self.session.run(None, feed)[0])


class _Bundleish:
    def __init__(self, model: Any, meta: Any, path: Path):
        self.model, self.meta, self.path = model, meta, path


def verified_engines(model_dir: str | os.PathLike[str], model_id: str) -> list[str]:
    """The engines a bundle can run on, fastest first: ``onnx-int8`` when its INT8 model passed its F1 check,
    ``onnx`` when the ONNX model matched PyTorch within :data:`PARITY_TOLERANCE`, then ``torch``. The export
    record must name this bundle's model id (a retrained bundle's old ONNX files do not count)."""
    import json

    model_dir = Path(model_dir)
    try:
        record = json.loads((model_dir / EXPORT_FILE).read_text())
    except (OSError, ValueError):
        return ["torch"]
    if record.get("model_id") != model_id:
        return ["torch"]
    out = ["torch"]
    if (model_dir / ONNX_FILE).is_file() and record.get("parity_max_abs_logit_diff", 1.0) <= PARITY_TOLERANCE:
        out.insert(0, "onnx")
        if (model_dir / INT8_FILE).is_file() and (record.get("int8") or {}).get("accepted"):
            out.insert(0, "onnx-int8")
    return out


def load_onnx(model_dir: str | os.PathLike[str], *, int8: bool = False, threads: int = 0) -> Any:
    """A bundle whose model runs in onnxruntime (``ctcid export`` must have written ``model.onnx``)."""
    from ..models import read_meta

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    path = model_dir / (INT8_FILE if int8 else ONNX_FILE)
    if not path.is_file():
        raise CtcidError(f"{path.name} is missing; run `ctcid export {model_dir} --format onnx` first", model_dir)
    return _Bundleish(OnnxModel(path, tuple(meta.inputs), threads), meta, model_dir)
