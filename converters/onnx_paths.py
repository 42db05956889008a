"""Conversions from ONNX, run inside the worker.

    onnx ─► tflite       onnx2tf writes a SavedModel, then ``tf_paths.tflite_from_saved_model``
    onnx ─► torchscript  onnx2torch builds a torch.fx module, traced to TorchScript

Layout: TensorFlow is channels-last, so onnx2tf turns NCHW graphs into NHWC ones. Truce keeps
the served signature as the user registered it: every input of rank 3 to 5 is named in
onnx2tf's ``keep_ncw_or_nchw_or_ncdhw_input_names``, so the TFLite model still takes NCHW and
transposes inside. The manifest's lineage records this (``layout``), and the parity check
proves the outputs keep their shapes.

onnx2tf fetches a sample image file from the internet for some 4-D inputs; a seeded local
file of that name in the working directory (the job folder) keeps it offline.
"""

from __future__ import annotations

import importlib.machinery
import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from converters.job import Converted, ConvertRequest
from converters.tf_paths import tflite_from_saved_model, version_of
from gateway.runtimes.common import first_line
from model_store.signature import example_inputs
from truce.errors import InvalidArgument

_ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
_UNSUPPORTED = re.compile(r"operation_type='([^']+)', version=(\d+)")


def _offline_sample(workdir: Path) -> None:
    path = workdir / _ONNX2TF_SAMPLE
    if not path.exists():
        rng = np.random.default_rng(0)
        np.save(path, rng.random((20, 128, 128, 3), dtype=np.float32))


def onnx_to_saved_model(
    onnx_path: Path, req: ConvertRequest, workdir: Path
) -> tuple[Path, dict[str, Any]]:
    """Run onnx2tf on ``onnx_path``; the SavedModel folder and the layout record."""
    import onnx2tf

    keep = [t.name for t in req.signature.inputs if 3 <= len(t.shape) <= 5]
    _offline_sample(Path.cwd())
    out = workdir / "_onnx2tf"
    req.progress("converting ONNX to TensorFlow with onnx2tf")
    try:
        onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            output_folder_path=str(out),
            keep_ncw_or_nchw_or_ncdhw_input_names=keep or None,
            output_signaturedefs=True,
            copy_onnx_input_output_names_to_tflite=True,
            non_verbose=True,
        )
    except SystemExit:
        # onnx2tf calls sys.exit(1) on unsupported graphs after logging why.
        raise InvalidArgument(
            "onnx2tf could not convert this ONNX graph (an operator or shape it does not "
            "support); simplify it with onnxsim or convert from the original model"
        ) from None
    if not (out / "saved_model.pb").is_file():
        raise InvalidArgument("onnx2tf wrote no SavedModel; the ONNX graph is not supported")
    layout: dict[str, Any] = {}
    if keep:
        layout["layout"] = (
            f"inputs {', '.join(keep)} stay channels-first as registered; onnx2tf transposes "
            "to channels-last inside the model"
        )
    return out, layout


def to_tflite(req: ConvertRequest) -> Converted:
    """ONNX -> TFLite through onnx2tf (all quantization modes)."""
    saved_model, record = onnx_to_saved_model(req.source, req, req.out_dir)
    req.progress(f"converting to TFLite ({req.quantize})")
    names = [t.name for t in req.signature.inputs]
    content, quant = tflite_from_saved_model(saved_model, names, req.quantize, req.calibration)
    out = req.out_dir / "model.tflite"
    out.write_bytes(content)
    return Converted(
        artifact=out,
        format="tflite",
        signature=req.signature,
        tool="onnx2tf",
        tool_version=version_of("onnx2tf"),
        record={**record, **quant, "tensorflow": version_of("tensorflow-cpu")},
    )


def _import_onnx2torch() -> Any:
    """onnx2torch imports torchvision for two operators (NMS, RoiAlign) at import time.

    torchvision from PyPI does not load beside every torch build; without it a stand-in is
    used for the import only, and graphs using those two operators fail with a clear error.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torchvision")
        ops = types.ModuleType("torchvision.ops")

        def _missing(*_args: Any, **_kwargs: Any) -> Any:
            raise InvalidArgument(
                "this ONNX graph uses NonMaxSuppression or RoiAlign, which need torchvision: "
                "pip install torchvision matching your torch"
            )

        ops.nms = ops.box_convert = ops.roi_align = _missing  # type: ignore[attr-defined]
        stub.ops = ops  # type: ignore[attr-defined]
        stub.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
        ops.__spec__ = importlib.machinery.ModuleSpec("torchvision.ops", None)
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
        try:
            import onnx2torch
        finally:
            # Only onnx2torch's modules keep the stand-in; other code sees no torchvision.
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
        return onnx2torch
    import onnx2torch

    return onnx2torch


def to_torchscript(req: ConvertRequest) -> Converted:
    """ONNX -> TorchScript through onnx2torch, traced on a batch of two."""
    import torch

    onnx2torch = _import_onnx2torch()
    req.progress("converting ONNX to torch with onnx2torch")
    try:
        module = onnx2torch.convert(str(req.source))
    except NotImplementedError as exc:
        m = _UNSUPPORTED.search(str(exc))
        what = f"{m.group(1)} (opset {m.group(2)})" if m else first_line(exc)
        raise InvalidArgument(
            f"onnx2torch cannot convert this graph: {what} is not supported; export the ONNX "
            "with an older opset (torch.onnx.export(..., dynamo=False, opset_version=17)) or "
            "convert from the original PyTorch model"
        ) from None
    example = example_inputs(req.signature.inputs, batch=2, seed=0)
    args = tuple(torch.from_numpy(example[t.name]) for t in req.signature.inputs)
    req.progress("tracing to TorchScript")
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), args)
    out = req.out_dir / "model.pt"
    torch.jit.save(traced, str(out))
    return Converted(
        artifact=out,
        format="torchscript",
        signature=req.signature,
        tool="onnx2torch",
        tool_version=version_of("onnx2torch"),
        record={"torch": version_of("torch"), "traced_batch": 2},
    )
