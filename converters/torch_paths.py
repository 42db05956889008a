"""Conversions from PyTorch (TorchScript ``.pt`` or ``torch.export`` ``.pt2``), run in the worker.

    target            how
    torchscript       torch.jit.trace of the exported program's module (from .pt2)
    torchscript_lite  TorchScript saved for the mobile lite interpreter (no optimize_for_mobile:
                      it fails on CPU-only torch builds)
    torch_export      TorchScript -> TS2EPConverter -> re-exported with a dynamic batch
    onnx              TorchScript: the TorchScript exporter (opset 17, dynamic axes);
                      .pt2: the dynamo exporter on the ExportedProgram (opset 18)
    tflite            none: litert-torch with a dynamic batch; where it cannot keep the batch
                      dynamic, ONNX -> onnx2tf (dynamic batch kept); last, litert-torch with
                      batch 1. dynamic/fp16/int8: ONNX -> onnx2tf -> SavedModel -> tf.lite,
                      because quantization works from a SavedModel.
    executorch        torch.export with batch 1..64, lowered to XNNPACK (portable ops where
                      XNNPACK does not lower); run by executorch's own runtime for parity

Every route keeps the registered signature (names, dtypes, channels-first layout); a route
that must fix a dynamic dimension says so in the new signature and in the lineage record.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.job import Converted, ConvertRequest
from converters.tf_paths import tflite_from_saved_model, version_of
from gateway.runtimes.common import first_line
from model_store.signature import Signature, TensorSpec, example_inputs
from truce.errors import InvalidArgument, MissingDependency

EXPORT_MAX_BATCH = 65536
EXECUTORCH_MAX_BATCH = 64
_CHANNELS_FIRST = "inputs stay channels-first as registered; {tool} converts layout inside"


def _torch() -> Any:
    import torch

    return torch


def example_args(sig: Signature, batch: int = 2) -> tuple[Any, ...]:
    """Seeded example tensors in signature order (batch 2: export specialises size 1)."""
    torch = _torch()
    arrays = example_inputs(sig.inputs, batch=batch, seed=0)
    return tuple(torch.from_numpy(arrays[t.name]) for t in sig.inputs)


def dynamic_shapes(sig: Signature, max_batch: int) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic shapes for every ``-1`` dimension (one shared batch dimension)."""
    torch = _torch()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    shapes: list[dict[int, Any]] = []
    for i, spec in enumerate(sig.inputs):
        dims: dict[int, Any] = {}
        for d, size in enumerate(spec.shape):
            if size == -1:
                dims[d] = batch if d == 0 else torch.export.Dim(f"in{i}_d{d}", min=1)
        shapes.append(dims)
    return tuple(shapes)


def fixed(sig: Signature, batch: int) -> Signature:
    """``sig`` with every dynamic dimension fixed to ``batch`` (the example's size)."""

    def fix(t: TensorSpec) -> TensorSpec:
        return TensorSpec(
            name=t.name, datatype=t.datatype, shape=[batch if d == -1 else d for d in t.shape]
        )

    return Signature(inputs=[fix(t) for t in sig.inputs], outputs=[fix(t) for t in sig.outputs])


def _dynamic(sig: Signature) -> bool:
    return any(-1 in t.shape for t in sig.inputs)


def load_module(req: ConvertRequest) -> Any:
    """The source as a callable torch module (TorchScript, or the .pt2 program's module)."""
    torch = _torch()
    if req.source_format == "torchscript":
        return torch.jit.load(str(req.source), map_location="cpu").eval()
    return torch.export.load(str(req.source)).module()


def export_program(req: ConvertRequest, max_batch: int = EXPORT_MAX_BATCH) -> tuple[Any, Signature]:
    """An ExportedProgram of the source with its dynamic dimensions, and its signature."""
    torch = _torch()
    example = example_args(req.signature)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if req.source_format == "torchscript":
            from torch._export.converter import TS2EPConverter

            req.progress("converting TorchScript to an ExportedProgram (TS2EPConverter)")
            scripted = torch.jit.load(str(req.source), map_location="cpu").eval()
            try:
                module = TS2EPConverter(scripted, example).convert().module()
            except Exception as exc:
                raise InvalidArgument(
                    f"torch cannot turn this TorchScript into an ExportedProgram "
                    f"({first_line(exc)}); torch.export the original model and register the .pt2"
                ) from None
        else:
            module = torch.export.load(str(req.source)).module()
        if not _dynamic(req.signature):
            return torch.export.export(module, example), req.signature
        req.progress(f"exporting with a dynamic batch (1..{max_batch})")
        try:
            program = torch.export.export(
                module, example, dynamic_shapes=dynamic_shapes(req.signature, max_batch)
            )
            return program, req.signature
        except Exception as exc:
            req.progress(f"dynamic export failed ({first_line(exc)}); exporting batch 2")
            return torch.export.export(module, example), fixed(req.signature, 2)


def _trace(req: ConvertRequest) -> Any:
    torch = _torch()
    module = load_module(req)
    if req.source_format == "torchscript":
        return module
    req.progress("tracing to TorchScript")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(module, example_args(req.signature))


def _done(req: ConvertRequest, out: Path, fmt: str, tool: str, **record: Any) -> Converted:
    return Converted(
        artifact=out,
        format=fmt,
        signature=record.pop("signature", req.signature),
        tool=tool,
        tool_version=version_of(record.pop("dist", "torch")),
        record=record,
    )


def to_torchscript(req: ConvertRequest) -> Converted:
    """.pt2 -> TorchScript (traced on a batch of two)."""
    out = req.out_dir / "model.pt"
    _torch().jit.save(_trace(req), str(out))
    return _done(req, out, "torchscript", "torch.jit.trace", traced_batch=2)


def to_torchscript_lite(req: ConvertRequest) -> Converted:
    """TorchScript for the mobile lite interpreter (``.ptl``)."""
    out = req.out_dir / "model.ptl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trace(req)._save_for_lite_interpreter(str(out))
    return _done(req, out, "torchscript_lite", "torch.jit (lite interpreter)")


def to_torch_export(req: ConvertRequest) -> Converted:
    """TorchScript -> ``torch.export`` program (``.pt2``) with a dynamic batch."""
    program, sig = export_program(req)
    out = req.out_dir / "model.pt2"
    _torch().export.save(program, str(out))
    return _done(req, out, "torch_export", "torch.export", signature=sig)


def export_onnx(req: ConvertRequest, out: Path) -> dict[str, Any]:
    """Write ONNX with the signature's names and dynamic axes; what to record."""
    torch = _torch()
    names_in = [t.name for t in req.signature.inputs]
    names_out = [t.name for t in req.signature.outputs]
    req.progress("exporting to ONNX")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if req.source_format == "torchscript":
            axes = {
                t.name: {d: f"{t.name}_d{d}" for d, s in enumerate(t.shape) if s == -1}
                for t in [*req.signature.inputs, *req.signature.outputs]
            }
            torch.onnx.export(
                load_module(req),
                example_args(req.signature),
                str(out),
                input_names=names_in,
                output_names=names_out,
                dynamic_axes={k: v for k, v in axes.items() if v},
                opset_version=17,
                dynamo=False,
            )
            return {"exporter": "torchscript", "opset": 17}
        program = torch.export.load(str(req.source))
        torch.onnx.export(
            program,
            input_names=names_in,
            output_names=names_out,
            f=str(out),
            dynamo=True,
            external_data=False,
            opset_version=18,
        )
        return {"exporter": "dynamo", "opset": 18}


def to_onnx(req: ConvertRequest) -> Converted:
    """PyTorch -> ONNX."""
    out = req.out_dir / "model.onnx"
    record = export_onnx(req, out)
    return _done(req, out, "onnx", "torch.onnx", **record)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _litert(req: ConvertRequest, dynamic: bool) -> Converted:
    import litert_torch

    module = load_module(req) if req.source_format == "torch_export" else None
    if module is None:
        module = export_program(req)[0].module()
    batch = 2 if dynamic else 1
    args = example_args(req.signature, batch=batch)
    req.progress(f"converting with litert-torch ({'dynamic batch' if dynamic else 'batch 1'})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamic:
            edge = litert_torch.convert(
                module, args, dynamic_shapes=dynamic_shapes(req.signature, EXPORT_MAX_BATCH)
            )
        else:
            edge = litert_torch.convert(module, args)
    out = req.out_dir / "model.tflite"
    edge.export(str(out))
    sig = req.signature if dynamic else fixed(req.signature, 1)
    layout = _CHANNELS_FIRST.format(tool="litert-torch")
    return _done(
        req,
        out,
        "tflite",
        "litert-torch",
        dist="litert-torch",
        signature=sig,
        layout=layout,
        quantize="none",
    )


def _via_onnx2tf(req: ConvertRequest) -> Converted:
    from converters.onnx_paths import onnx_to_saved_model

    work = req.out_dir / "_onnx"
    work.mkdir(exist_ok=True)
    onnx_file = work / "model.onnx"
    record = export_onnx(req, onnx_file)
    saved_model, layout = onnx_to_saved_model(onnx_file, req, req.out_dir)
    req.progress(f"converting to TFLite ({req.quantize})")
    names = [t.name for t in req.signature.inputs]
    content, quant = tflite_from_saved_model(saved_model, names, req.quantize, req.calibration)
    out = req.out_dir / "model.tflite"
    out.write_bytes(content)
    return _done(
        req,
        out,
        "tflite",
        "torch.onnx + onnx2tf",
        dist="onnx2tf",
        onnx=record,
        **layout,
        **quant,
    )


def to_tflite(req: ConvertRequest) -> Converted:
    """PyTorch -> TFLite (see the module docstring for the order of routes)."""
    if req.quantize != "none":
        if not _has("onnx2tf"):
            raise MissingDependency("onnx2tf", "convert")
        result = _via_onnx2tf(req)
        result.record["route"] = "onnx2tf (quantization works from a SavedModel)"
        return result
    dynamic = _dynamic(req.signature)
    routes: list[tuple[str, Callable[[], Converted]]] = []
    if _has("litert_torch"):
        what = "litert-torch with a dynamic batch" if dynamic else "litert-torch"
        routes.append((what, lambda: _litert(req, dynamic=dynamic)))
    if _has("onnx2tf"):
        routes.append(("onnx2tf", lambda: _via_onnx2tf(req)))
    if dynamic and _has("litert_torch"):
        routes.append(("litert-torch with batch 1", lambda: _litert(req, dynamic=False)))
    if not routes:
        raise MissingDependency("litert-torch", "convert")
    failures: list[str] = []
    for name, attempt in routes:
        try:
            result = attempt()
        except Exception as exc:
            failures.append(f"{name} failed ({first_line(exc, 120)})")
            req.progress(f"{failures[-1]}; trying the next route")
            continue
        result.record["route"] = name
        if failures:
            result.record["fallback_reason"] = "; ".join(failures)
        return result
    raise InvalidArgument(f"no TFLite route worked: {'; '.join(failures)}")


def to_executorch(req: ConvertRequest) -> Converted:
    """PyTorch -> ExecuTorch ``.pte`` (XNNPACK where it lowers, else portable operators)."""
    from executorch import exir

    program, sig = export_program(req, max_batch=EXECUTORCH_MAX_BATCH)
    req.progress("lowering to ExecuTorch")
    delegate = "xnnpack"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )

            edge = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        except Exception as exc:
            req.progress(f"XNNPACK did not lower ({first_line(exc, 120)}); using portable ops")
            delegate = "portable"
            edge = exir.to_edge(program)
        buffer = edge.to_executorch().buffer
    out = req.out_dir / "model.pte"
    out.write_bytes(buffer)
    record: dict[str, Any] = {"delegate": delegate}
    if _dynamic(sig):
        record["max_batch"] = EXECUTORCH_MAX_BATCH
    return _done(req, out, "executorch", "executorch", dist="executorch", signature=sig, **record)
