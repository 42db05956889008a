"""ONNX models on ONNX Runtime.

``cpu`` uses the CPU execution provider; ``cuda`` / ``cuda:N`` the CUDA execution provider
with ``device_id=N`` (and the CPU provider for operators CUDA lacks). ONNX Runtime silently
falls back to the CPU when CUDA cannot start, so the session's providers are checked after
it is created. External-data files must stay inside the model's folder.

Options: ``threads`` (intra-op threads; ONNX Runtime's default is one per core).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnxruntime as ort

from gateway.runtimes.base import Arrays, DeclaredSignature, Runtime
from gateway.runtimes.common import (
    bad_artifact,
    bad_inputs,
    contiguous,
    device_unavailable,
    keyed_inputs,
    output_names,
    parse_device,
)
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument

#: ONNX Runtime type strings -> OIP datatypes
ORT_DATATYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


class OnnxRuntime(Runtime):
    """Serves an ONNX model with ONNX Runtime on ``cpu`` / ``cuda`` / ``cuda:N``."""

    formats = ("onnx",)

    def _load(self) -> None:
        device = parse_device(self.spec.device)
        providers: list[Any] = [_CPU]
        if device.is_cuda:
            if _CUDA not in ort.get_available_providers():
                raise device_unavailable(self.spec.device, "ONNX Runtime (no CUDA provider)", 0)
            providers = [(_CUDA, {"device_id": device.index}), _CPU]
        _check_external_data(self.spec.artifact)
        options = ort.SessionOptions()
        if "threads" in self.spec.options:
            options.intra_op_num_threads = int(self.spec.options["threads"])
        try:
            self._session = ort.InferenceSession(
                str(self.spec.artifact), sess_options=options, providers=providers
            )
        except Exception as exc:
            raise bad_artifact(
                "ONNX model", exc, "export it again with torch.onnx.export or tf2onnx"
            ) from None
        if device.is_cuda and _CUDA not in self._session.get_providers():
            raise device_unavailable(self.spec.device, "ONNX Runtime's CUDA provider", 0)
        self._inputs = [_spec(a) for a in self._session.get_inputs()]
        self._outputs = [_spec(a) for a in self._session.get_outputs()]
        self._strings = {t.name for t in self._inputs if t.datatype == "BYTES"}

    def _predict(self, inputs: Arrays) -> Arrays:
        feed = keyed_inputs(self, inputs, [t.name for t in self._inputs])
        for name in self._strings & feed.keys():
            # ONNX Runtime wants str objects for tensor(string).
            feed[name] = feed[name].astype(str).astype(object)
        try:
            results = self._session.run(None, feed)
        except Exception as exc:
            raise bad_inputs(exc) from None
        names = output_names(self, [t.name for t in self._outputs], len(results))
        return {n: contiguous(r) for n, r in zip(names, results, strict=True)}

    def _unload(self) -> None:
        del self._session

    def _declared_signature(self) -> DeclaredSignature:
        return DeclaredSignature(inputs=list(self._inputs), outputs=list(self._outputs))


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_DATATYPES.get(arg.type)
    if datatype is None:
        raise InvalidArgument(
            f"tensor {arg.name!r} has ONNX type {arg.type}, which Truce cannot serve; "
            f"use one of {', '.join(ORT_DATATYPES)}"
        )
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)


def _check_external_data(model: Path) -> None:
    """Refuse external-data locations that leave the model's folder (absolute, ``..``)."""
    if importlib.util.find_spec("onnx") is None:
        return
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as exc:
        raise bad_artifact("ONNX model", exc, "export it again") from None
    root = model.parent.resolve()
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = ExternalDataInfo(tensor).location
        target = (root / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise InvalidArgument(
                f"tensor {tensor.name!r} keeps its data outside the model folder; "
                "save external data next to the .onnx file with a relative location"
            )


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
