"""Open Inference Protocol gRPC messages <-> core types: pure functions, no I/O.

``decode_infer_request`` turns a ``ModelInferRequest`` into an ``InferRequest``; every
declared shape and size is checked against the data actually received before any array
is allocated, so a hostile message cannot make the server read past a buffer or allocate
more than it sent. ``encode_infer_response`` writes an ``InferResponse`` back, either as
typed contents or as ``raw_output_contents`` (the form tritonclient sends and expects;
FP16 has no typed field and is always raw).

The raw layout and its checks are shared with the REST binary extension
(``gateway/protocols/oip/tensors.py``), so both protocols accept and refuse the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gateway.protocols.oip.generated import grpc_service_pb2 as pb
from gateway.protocols.oip.tensors import decode_raw, element_count, encode_raw, shaped, wire_dtype
from gateway.types import InferRequest, InferResponse, ModelMetadata
from model_store.signature import datatype_of
from truce.errors import InvalidArgument

#: OIP datatype -> the InferTensorContents field that carries it (FP16: raw only)
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = tuple(sorted(set(CONTENTS_FIELD.values())))


def _decode_typed(
    name: str,
    datatype: str,
    shape: Sequence[int],
    tensor: pb.ModelInferRequest.InferInputTensor,
    max_elements: int | None,
) -> np.ndarray:
    dtype = wire_dtype(name, datatype)
    count = element_count(name, shape, max_elements)
    contents = tensor.contents
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(
            f"input {name!r} is {datatype}, which has no typed contents field: "
            "send it in raw_input_contents"
        )
    for other in _ALL_FIELDS:
        if other != field and len(getattr(contents, other)):
            raise InvalidArgument(
                f"input {name!r} is {datatype} but its data is in contents.{other}; "
                f"use contents.{field}"
            )
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"input {name!r} ({datatype} {list(shape)}): expected {count} values in "
            f"contents.{field}, got {len(values)}"
        )
    if datatype == "BYTES":
        flat = np.empty(count, dtype=object)
        flat[:] = list(values)
    elif dtype.itemsize < 4 and dtype.kind in "iu":  # carried in 32-bit fields
        wide = np.fromiter(values, dtype=np.int64, count=count)
        info = np.iinfo(dtype)
        if count and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidArgument(
                f"input {name!r} is {datatype} but has values outside [{info.min}, {info.max}]"
            )
        flat = wide.astype(dtype)
    else:
        flat = np.fromiter(values, dtype=dtype, count=count)
    return shaped(name, flat, shape)


def _has_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> bool:
    return tensor.HasField("contents") and any(
        len(getattr(tensor.contents, f)) for f in _ALL_FIELDS
    )


def parameters_to_python(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """An InferParameter map as plain Python values (unset parameters are left out)."""
    out: dict[str, Any] = {}
    for key, param in params.items():
        which = param.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(param, which)
    return out


def python_to_parameter(value: Any) -> pb.InferParameter:
    """One Python value as an InferParameter (other types travel as their string form)."""
    if isinstance(value, bool | np.bool_):
        return pb.InferParameter(bool_param=bool(value))
    if isinstance(value, int | np.integer):
        value = int(value)
        if value > 2**63 - 1:
            return pb.InferParameter(uint64_param=value)
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float | np.floating):
        return pb.InferParameter(double_param=float(value))
    return pb.InferParameter(string_param=str(value))


def decode_infer_request(
    msg: pb.ModelInferRequest, *, max_elements: int | None = None
) -> InferRequest:
    """A ModelInferRequest as an InferRequest; raises ``InvalidArgument`` naming the problem.

    Names, datatypes and shapes are checked against the data here (and no tensor may have
    more than ``max_elements`` elements); whether they match the model's signature is the
    dataplane's job.
    """
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; "
            "send one entry per input, in the order of `inputs`"
        )
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise InvalidArgument(f"input {i} has no name")
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        shape = list(tensor.shape)
        if raw:
            if _has_contents(tensor):
                raise InvalidArgument(
                    f"input {name!r} has contents while the request uses raw_input_contents; "
                    "send every input one way"
                )
            inputs[name] = decode_raw(name, tensor.datatype, shape, raw[i], max_elements)
        else:
            inputs[name] = _decode_typed(name, tensor.datatype, shape, tensor, max_elements)
    requested: list[str] | None = None
    if msg.outputs:
        requested = [o.name for o in msg.outputs]
        if len(set(requested)) != len(requested):
            raise InvalidArgument(f"requested outputs {requested} name an output twice")
    return InferRequest(
        inputs=inputs,
        id=msg.id or None,
        requested_outputs=requested,
        parameters=parameters_to_python(msg.parameters),
        protocol="grpc",
    )


def _fill_contents(contents: pb.InferTensorContents, arr: np.ndarray, datatype: str) -> None:
    values = getattr(contents, CONTENTS_FIELD[datatype])
    flat = arr.ravel()
    if datatype == "BYTES":
        values.extend(x.encode() if isinstance(x, str) else bytes(x) for x in flat)
    else:
        values.extend(flat.tolist())


def encode_infer_response(resp: InferResponse, *, raw: bool) -> pb.ModelInferResponse:
    """An InferResponse as a ModelInferResponse.

    ``raw=True`` writes ``raw_output_contents`` (use it when the request came raw); a
    response with an FP16 output is always raw, since mixing the two forms is not allowed.
    """
    out = pb.ModelInferResponse(
        model_name=resp.model_name, model_version=resp.model_version, id=resp.id or ""
    )
    for key, value in resp.parameters.items():
        out.parameters[key].CopyFrom(python_to_parameter(value))
    datatypes = {name: datatype_of(arr.dtype) for name, arr in resp.outputs.items()}
    raw = raw or any(dt not in CONTENTS_FIELD for dt in datatypes.values())
    for name, arr in resp.outputs.items():
        datatype = datatypes[name]
        tensor = out.outputs.add(name=name, datatype=datatype, shape=arr.shape)
        if raw:
            out.raw_output_contents.append(encode_raw(arr, datatype))
        else:
            _fill_contents(tensor.contents, arr, datatype)
    return out


def encode_model_metadata(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    """Model metadata as a ModelMetadataResponse (``-1`` marks a dynamic dimension)."""
    out = pb.ModelMetadataResponse(name=meta.name, versions=meta.versions, platform=meta.platform)
    for spec in meta.inputs:
        out.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    for spec in meta.outputs:
        out.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    return out
