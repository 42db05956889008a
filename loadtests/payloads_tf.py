"""TensorFlow Serving request bodies (REST ``:predict`` and gRPC ``PredictionService/Predict``).

REST follows TF Serving's documented formats: the row format ``{"instances": [...]}`` (one
entry per item of the leading dimension; an object per row when there are several inputs,
which then must share that dimension) and the columnar format ``{"inputs": {name: tensor}}``.
BYTES values are sent as JSON strings. gRPC uses the ``tensorflow-serving-api`` messages with
numeric tensors in ``tensor_content`` (what ``tf.make_tensor_proto`` produces) and BYTES in
``string_val``. Importing those messages imports TensorFlow (slow): only the gRPC path does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

import numpy as np

from loadtests.payloads import ModelRef, compact_json, json_values, raw_bytes
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument, MissingDependency

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"

#: OIP datatype -> TensorFlow DataType enum name
TF_DTYPES: dict[str, str] = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}
OIP_DTYPES: dict[str, str] = {v: k for k, v in TF_DTYPES.items()}


def rest_path(model: ModelRef) -> str:
    """``/v1/models/{m}[/versions/{n}|/labels/{label}]:predict``."""
    path = f"/v1/models/{quote(model.name, safe='')}"
    if model.version is not None:
        kind = "versions" if model.version.isdigit() else "labels"
        path += f"/{kind}/{quote(model.version, safe='')}"
    return path + ":predict"


def metadata_path(model: ModelRef) -> str:
    return rest_path(model).removesuffix(":predict") + "/metadata"


def rest_body(
    inputs: Sequence[tuple[TensorSpec, np.ndarray]],
    fmt: Literal["instances", "inputs"],
    signature_name: str | None,
) -> tuple[bytes, bytes]:
    """A ``:predict`` body and the key every good response contains."""
    body: dict[str, Any] = {}
    if signature_name:
        body["signature_name"] = signature_name
    if fmt == "inputs":
        body["inputs"] = {spec.name: json_values(arr) for spec, arr in inputs}
        return compact_json(body), b'"outputs"'
    leading = {arr.shape[0] if arr.ndim else None for _, arr in inputs}
    if None in leading or len(leading) != 1:
        raise InvalidArgument(
            "the row format (instances) needs every input to share its first dimension: "
            "use --tfserving-format inputs"
        )
    if len(inputs) == 1:
        body["instances"] = json_values(inputs[0][1])
    else:
        columns = {spec.name: json_values(arr) for spec, arr in inputs}
        rows = next(iter(leading))
        body["instances"] = [{k: v[i] for k, v in columns.items()} for i in range(rows or 0)]
    return compact_json(body), b'"predictions"'


def _apis() -> tuple[Any, Any, Any, Any]:
    try:
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2
    except ImportError:
        raise MissingDependency("tensorflow-serving-api", "tensorflow") from None
    return predict_pb2, tensor_pb2, tensor_shape_pb2, types_pb2


def grpc_predict(
    model: ModelRef,
    inputs: Sequence[tuple[TensorSpec, np.ndarray]],
    signature_name: str | None,
) -> bytes:
    """A serialized ``tensorflow.serving.PredictRequest``."""
    predict_pb2, tensor_pb2, tensor_shape_pb2, types_pb2 = _apis()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model.name
    request.model_spec.signature_name = signature_name or "serving_default"
    if model.version is not None:
        if model.version.isdigit():
            request.model_spec.version.value = int(model.version)
        else:
            request.model_spec.version_label = model.version
    for spec, arr in inputs:
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in arr.shape]
        )
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DataType.Value(TF_DTYPES[spec.datatype]), tensor_shape=shape
        )
        if spec.datatype == "BYTES":
            tensor.string_val.extend(
                v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel()
            )
        else:
            tensor.tensor_content = raw_bytes(arr)
        request.inputs[spec.name].CopyFrom(tensor)
    return bytes(request.SerializeToString())
