"""TF Serving gRPC messages <-> core types: pure functions, no I/O.

``TensorProto`` arrives in either form TF clients use:

- ``tensor_content``: raw little-endian bytes (what ``tf.make_tensor_proto`` writes for
  numeric arrays), checked against the shape with the same code as the OIP binary formats;
- typed values (``float_val``, ``int_val``, ``string_val``...): exactly one per element, or a
  single value repeated over the whole shape (TF's rule for constant tensors), for at most
  ``MAX_FILL`` elements.

Responses use the form of the request: ``tensor_content`` when any input used it, typed
values otherwise (``string_val`` always for strings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gateway.protocols.oip.tensors import decode_raw, element_count, encode_raw
from gateway.protocols.tfserving.dtypes import PREDICT_METHOD, SIGNATURE, check_signature
from gateway.protocols.tfserving.dtypes import oip_datatype as _oip
from gateway.protocols.tfserving.dtypes import tf_dtype as _tf
from gateway.protocols.tfserving.generated.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
)
from gateway.protocols.tfserving.generated.tensorflow.core.protobuf import meta_graph_pb2
from gateway.protocols.tfserving.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)
from gateway.types import InferRequest, InferResponse, ModelMetadata
from model_store.signature import NUMPY_DTYPES, TensorSpec
from truce.errors import InvalidArgument

#: OIP datatype -> the TensorProto field holding its typed values
VALUE_FIELD: dict[str, str] = {
    "BOOL": "bool_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "INT64": "int64_val",
    "FP16": "half_val",
    "FP32": "float_val",
    "FP64": "double_val",
    "BYTES": "string_val",
}
_ALL_FIELDS = tuple(sorted(set(VALUE_FIELD.values())))
#: most elements one repeated typed value may fill: a tiny message must not make the server
#: allocate a large tensor (send tensor_content for large constant tensors)
MAX_FILL = 1 << 16


# --- tensors -----------------------------------------------------------------------------
def decode_tensor(
    name: str, proto: tensor_pb2.TensorProto, max_elements: int | None = None
) -> tuple[np.ndarray, bool]:
    """One input tensor, and whether it came as ``tensor_content``."""
    datatype = _oip(name, proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgument(f"input {name!r} has an unknown rank; give its shape")
    shape = [d.size for d in proto.tensor_shape.dim]
    count = element_count(name, shape, max_elements)
    field = VALUE_FIELD[datatype]
    used = [f for f in _ALL_FIELDS if len(getattr(proto, f))]
    if proto.tensor_content:
        if datatype == "BYTES":
            raise InvalidArgument(f"input {name!r} is DT_STRING: send its values in string_val")
        if used:
            raise InvalidArgument(f"input {name!r} has both tensor_content and {used[0]}")
        return decode_raw(name, datatype, shape, proto.tensor_content, max_elements), True
    for other in used:
        if other != field:
            raise InvalidArgument(
                f"input {name!r} is {datatype} but its values are in {other}; use {field}"
            )
    values = getattr(proto, field)
    n = len(values)
    if n != count and not (n == 1 and 1 < count <= MAX_FILL):
        raise InvalidArgument(
            f"input {name!r} (shape {shape}): expected {count} values in {field} (or one to "
            f"repeat over at most {MAX_FILL} elements), got {n}"
        )
    flat = _typed(name, datatype, values)
    if n != count:
        flat = np.repeat(flat, count)
    return flat.reshape(shape), False


def _typed(name: str, datatype: str, values: Sequence[Any]) -> np.ndarray:
    if datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    dtype = NUMPY_DTYPES[datatype]
    if datatype == "FP16":  # half_val carries the IEEE bits in int32 fields
        bits = np.array(values, dtype=np.int64)
        if len(bits) and (bits.min() < 0 or bits.max() > 0xFFFF):
            raise InvalidArgument(f"input {name!r}: half_val holds values that are not FP16 bits")
        return bits.astype(np.uint16).view(np.float16)
    if dtype.kind in "iu" and dtype.itemsize < 4:  # carried in int_val (int32)
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if len(wide) and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidArgument(
                f"input {name!r} is {datatype} but has values outside [{info.min}, {info.max}]"
            )
        return wide.astype(dtype)
    return np.array(values, dtype=dtype)


def encode_tensor(arr: np.ndarray, datatype: str, *, raw: bool) -> tensor_pb2.TensorProto:
    """A TensorProto for an output (see the module docstring for the form)."""
    proto = tensor_pb2.TensorProto(dtype=_tf(datatype))  # type: ignore[arg-type]
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in arr.shape)
    if datatype == "BYTES":
        proto.string_val.extend(x.encode() if isinstance(x, str) else bytes(x) for x in arr.ravel())
    elif raw:
        proto.tensor_content = encode_raw(arr, datatype)
    elif datatype == "FP16":
        proto.half_val.extend(np.ascontiguousarray(arr).view(np.uint16).ravel().tolist())
    else:
        getattr(proto, VALUE_FIELD[datatype]).extend(arr.ravel().tolist())
    return proto


# --- predict -----------------------------------------------------------------------------
def model_version(spec: model_pb2.ModelSpec) -> str | None:
    """The version a ``ModelSpec`` names: a number, a label (alias) or ``None`` (latest)."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        if spec.version.value < 1:
            raise InvalidArgument("model_spec.version must be a version number >= 1")
        return str(spec.version.value)
    if choice == "version_label":
        return spec.version_label or None
    return None


def model_name(spec: model_pb2.ModelSpec) -> str:
    if not spec.name:
        raise InvalidArgument("model_spec.name is empty: name the model")
    return str(spec.name)


def decode_predict(
    request: predict_pb2.PredictRequest, max_elements: int | None = None
) -> tuple[InferRequest, bool]:
    """A PredictRequest as an InferRequest, and whether any input used ``tensor_content``."""
    check_signature(request.model_spec.signature_name)
    if not request.inputs:
        raise InvalidArgument("the request has no inputs")
    inputs: dict[str, np.ndarray] = {}
    raw = False
    for name, proto in request.inputs.items():
        inputs[name], used_raw = decode_tensor(name, proto, max_elements)
        raw = raw or used_raw
    filters = list(request.output_filter)
    if len(set(filters)) != len(filters):
        raise InvalidArgument("output_filter names an output twice")
    req = InferRequest(inputs=inputs, requested_outputs=filters or None, protocol="tfserving-grpc")
    return req, raw


def encode_predict(resp: InferResponse, *, raw: bool) -> predict_pb2.PredictResponse:
    out = predict_pb2.PredictResponse()
    _fill_spec(out.model_spec, resp.model_name, resp.model_version)
    out.model_spec.signature_name = SIGNATURE
    for spec in resp.output_specs:
        out.outputs[spec.name].CopyFrom(
            encode_tensor(resp.outputs[spec.name], spec.datatype, raw=raw)
        )
    return out


def _fill_spec(spec: model_pb2.ModelSpec, name: str, version: str | None) -> None:
    spec.name = name
    if version and version.isdigit():
        spec.version.value = int(version)


# --- metadata and status -----------------------------------------------------------------
def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo()
    info.name = spec.name
    info.dtype = _tf(spec.datatype)  # type: ignore[assignment]
    info.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in spec.shape)
    return info


def signature_def_map(meta: ModelMetadata) -> get_model_metadata_pb2.SignatureDefMap:
    sigs = get_model_metadata_pb2.SignatureDefMap()
    sig = sigs.signature_def[SIGNATURE]
    sig.method_name = PREDICT_METHOD
    for spec in meta.inputs:
        sig.inputs[spec.name].CopyFrom(_tensor_info(spec))
    for spec in meta.outputs:
        sig.outputs[spec.name].CopyFrom(_tensor_info(spec))
    return sigs


def encode_metadata(
    meta: ModelMetadata, version: str | None
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    out = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_spec(out.model_spec, meta.name, version or (meta.versions[-1] if meta.versions else None))
    out.metadata["signature_def"].Pack(signature_def_map(meta))
    return out


def check_metadata_fields(fields: Sequence[str]) -> None:
    if list(fields) != ["signature_def"]:
        raise InvalidArgument(
            'metadata_field must be exactly ["signature_def"], the one field TF Serving '
            "and Truce provide"
        )


def encode_status(
    versions: list[tuple[str, bool]],
) -> get_model_status_pb2.GetModelStatusResponse:
    """``(version, ready)`` pairs as ModelVersionStatus entries (see the REST codec)."""
    out = get_model_status_pb2.GetModelStatusResponse()
    states = get_model_status_pb2.ModelVersionStatus
    for version, ready in versions:
        entry = out.model_version_status.add()
        entry.version = int(version) if version.isdigit() else 0
        entry.state = states.AVAILABLE if ready else states.UNKNOWN
        if not ready:
            entry.status.error_code = 14  # tensorflow.error.Code.UNAVAILABLE
            entry.status.error_message = "the version is not ready (loading or failed to load)"
    return out
