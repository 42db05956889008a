"""Request payloads generated from a model signature, for every protocol Truce speaks.

``build_request(protocol, model, specs)`` turns a signature (``TensorSpec`` list) into a
``PreparedRequest``: deterministic random inputs (dynamic ``-1`` dimensions become ``batch``,
or a per-input shape given in ``shapes``), encoded exactly as that protocol's clients send them:

    oip-rest          POST /v2/models/{m}[/versions/{v}]/infer, JSON, flat row-major ``data``
    oip-rest-binary   same URL, binary tensor extension (``Inference-Header-Content-Length``,
                      ``binary_data_size`` per input, ``binary_data_output`` for the outputs)
    oip-grpc          inference.GRPCInferenceService/ModelInfer with ``raw_input_contents``
    tfserving-rest    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict (``instances`` or
                      ``inputs``), see ``payloads_tf``
    tfserving-grpc    tensorflow.serving.PredictionService/Predict, see ``payloads_tf``
    torchserve-rest   POST /predictions/{m}[/{v}]: a JSON tensor (nested list; an object of
                      them for several inputs) or an ``.npy`` body

FP16/FP32 numbers are written in their shortest round-trip form, so JSON bodies are as small
as a careful client makes them and every server parses the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import numpy as np

from loadtests.prepared import PROTOCOLS, PreparedRequest
from model_store.signature import TensorSpec, example_inputs
from truce.errors import InvalidArgument

OIP_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
#: refuse to generate bodies larger than this (a typo like -1 -> 100000 would fill memory)
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class ModelRef:
    """``NAME[:VERSION]``; the version is a number or a label/alias, as the server allows."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, _, version = text.partition(":")
        if not name or any(c in name for c in "/?#% \t\n") or (_ and not version):
            raise InvalidArgument(
                f"bad model {text!r}: write NAME or NAME:VERSION (a number or an alias)"
            )
        if version and any(c in version for c in "/?#% :\t\n"):
            raise InvalidArgument(f"bad version {version!r} in {text!r}")
        return cls(name, version or None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


def concrete_inputs(
    specs: Sequence[TensorSpec],
    *,
    batch: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> list[tuple[TensorSpec, np.ndarray]]:
    """Deterministic inputs: ``-1`` dims become ``batch`` unless ``shapes[name]`` says more."""
    if not specs:
        raise InvalidArgument("the signature has no inputs: give --input NAME:DTYPE:SHAPE")
    if batch < 1:
        raise InvalidArgument(f"batch must be >= 1, got {batch}")
    shapes = dict(shapes or {})
    unknown = set(shapes) - {s.name for s in specs}
    if unknown:
        raise InvalidArgument(
            f"--shape names unknown input(s) {', '.join(sorted(unknown))}; "
            f"the model takes {', '.join(s.name for s in specs)}"
        )
    concrete: list[TensorSpec] = []
    total = 0
    for spec in specs:
        shape = list(shapes.get(spec.name, [batch if d == -1 else d for d in spec.shape]))
        if not spec.accepts_shape(shape) or any(d < 0 for d in shape):
            raise InvalidArgument(
                f"shape {shape} for input {spec.name!r} does not fit its signature {spec.shape}"
            )
        itemsize = 8 if spec.datatype == "BYTES" else spec.dtype.itemsize
        total += math.prod(shape) * itemsize
        concrete.append(spec.model_copy(update={"shape": shape}))
    if total > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(
            f"the inputs would take {total} bytes (limit {MAX_PAYLOAD_BYTES}): "
            "use a smaller --batch or --shape"
        )
    arrays = example_inputs(concrete, batch=batch, seed=seed)
    return [(spec, arrays[spec.name]) for spec in specs]


def json_values(arr: np.ndarray) -> Any:
    """Nested Python lists for JSON; floats in the shortest form that round-trips their dtype."""
    if arr.dtype == np.float32 or arr.dtype == np.float16:
        # str() of a numpy float32 scalar is the shortest decimal that reads back as the same
        # float32; float() of that string prints the same way in JSON
        values: list[Any] = [float(str(v)) for v in arr.ravel()]
    elif arr.dtype == object:
        values = [_text(v) for v in arr.ravel()]
    else:
        return arr.tolist()
    return np.array(values, dtype=object).reshape(arr.shape).tolist()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def raw_bytes(arr: np.ndarray) -> bytes:
    """Row-major little-endian bytes; BYTES elements as 4-byte length + data (OIP/Triton)."""
    if arr.dtype == object:
        parts = []
        for item in arr.ravel():
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(_LEN.pack(len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def oip_infer_path(model: ModelRef) -> str:
    path = f"/v2/models/{quote(model.name, safe='')}"
    if model.version is not None:
        path += f"/versions/{quote(model.version, safe='')}"
    return path + "/infer"


def oip_rest_json(model: ModelRef, inputs: Sequence[tuple[TensorSpec, np.ndarray]]) -> bytes:
    """An OIP v2 JSON infer request body with flat, row-major ``data``."""
    body = {
        "inputs": [
            {
                "name": spec.name,
                "shape": list(arr.shape),
                "datatype": spec.datatype,
                "data": json_values(arr.ravel()),
            }
            for spec, arr in inputs
        ]
    }
    return compact_json(body)


def oip_rest_binary(
    model: ModelRef, inputs: Sequence[tuple[TensorSpec, np.ndarray]]
) -> tuple[bytes, int]:
    """An OIP v2 binary-extension body and its JSON header length."""
    blobs = [raw_bytes(arr) for _, arr in inputs]
    header = compact_json(
        {
            "inputs": [
                {
                    "name": spec.name,
                    "shape": list(arr.shape),
                    "datatype": spec.datatype,
                    "parameters": {"binary_data_size": len(blob)},
                }
                for (spec, arr), blob in zip(inputs, blobs, strict=True)
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + b"".join(blobs), len(header)


def oip_grpc(model: ModelRef, inputs: Sequence[tuple[TensorSpec, np.ndarray]]) -> bytes:
    """A serialized ``inference.ModelInferRequest`` carrying ``raw_input_contents``."""
    from gateway.protocols.oip.generated import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model.name, model_version=model.version or "")
    for spec, arr in inputs:
        tensor = request.inputs.add()
        tensor.name = spec.name
        tensor.datatype = spec.datatype
        tensor.shape.extend(arr.shape)
        request.raw_input_contents.append(raw_bytes(arr))
    return bytes(request.SerializeToString())


def torchserve_body(
    inputs: Sequence[tuple[TensorSpec, np.ndarray]], fmt: Literal["json", "npy"]
) -> tuple[bytes, str]:
    """A TorchServe ``/predictions`` body and its content type."""
    if fmt == "npy":
        if len(inputs) != 1 or inputs[0][0].datatype == "BYTES":
            raise InvalidArgument(
                "an .npy body carries one numeric tensor: use --torchserve-format json"
            )
        buf = io.BytesIO()
        np.save(buf, inputs[0][1], allow_pickle=False)
        return buf.getvalue(), "application/x-npy"
    if len(inputs) == 1:
        return compact_json(json_values(inputs[0][1])), "application/json"
    return compact_json({spec.name: json_values(arr) for spec, arr in inputs}), "application/json"


def build_request(
    protocol: str,
    model: ModelRef,
    specs: Sequence[TensorSpec],
    *,
    batch: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    tfserving_format: Literal["instances", "inputs"] = "instances",
    torchserve_format: Literal["json", "npy"] = "json",
    signature_name: str | None = None,
) -> PreparedRequest:
    """The request ``protocol``'s clients would send for ``model`` with generated inputs."""
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    inputs = concrete_inputs(specs, batch=batch, shapes=shapes, seed=seed)
    transport = PROTOCOLS[protocol]
    if protocol == "oip-rest":
        return PreparedRequest(
            protocol,
            transport,
            oip_infer_path(model),
            oip_rest_json(model, inputs),
            {"Content-Type": "application/json"},
            b'"outputs"',
        )
    if protocol == "oip-rest-binary":
        body, header_len = oip_rest_binary(model, inputs)
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_len),
        }
        return PreparedRequest(
            protocol, transport, oip_infer_path(model), body, headers, b'"outputs"'
        )
    if protocol == "oip-grpc":
        return PreparedRequest(protocol, transport, OIP_INFER_METHOD, oip_grpc(model, inputs))
    if protocol == "torchserve-rest":
        path = f"/predictions/{quote(model.name, safe='')}"
        if model.version is not None:
            path += f"/{quote(model.version, safe='')}"
        body, content_type = torchserve_body(inputs, torchserve_format)
        return PreparedRequest(protocol, transport, path, body, {"Content-Type": content_type})

    from loadtests import payloads_tf

    if protocol == "tfserving-rest":
        body, expect = payloads_tf.rest_body(inputs, tfserving_format, signature_name)
        return PreparedRequest(
            protocol,
            transport,
            payloads_tf.rest_path(model),
            body,
            {"Content-Type": "application/json"},
            expect,
        )
    body = payloads_tf.grpc_predict(model, inputs, signature_name)
    return PreparedRequest(protocol, transport, payloads_tf.PREDICT_METHOD, body)
