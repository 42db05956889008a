"""TorchServe request bodies and responses <-> core types: pure functions, no I/O.

A body (REST ``POST /predictions/{m}``, or one entry of a gRPC ``PredictionsRequest.input``
map) is read by the conventions of TorchServe's default handlers:

- an ``.npy`` file (``np.save``; recognised by its magic bytes or ``application/x-npy``): one
  numeric tensor for a model with one input. Parsed without pickle, and the header's shape is
  checked against the bytes received before anything is allocated;
- JSON: a (nested) list or number for the model's only input, ``{"data": tensor}`` likewise,
  or ``{"input_name": tensor, ...}`` for several inputs (values as in TF Serving's JSON, see
  ``gateway/protocols/json_tensors.py``);
- any other bytes, for a model whose one input is BYTES: that input, one element.

Numeric values are converted to the input's datatype when no value changes (``np.save`` of
a Python float list writes float64; an FP32 model takes it). The response is the output as a
JSON list, like TorchServe's default handlers, or ``{"output_name": list, ...}`` for several.
Errors are TorchServe's ``{"code": status, "type": "...Exception", "message": "..."}``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from gateway.protocols.json_tensors import json_value, to_array
from gateway.protocols.oip.rest_codec import parse_json
from gateway.protocols.oip.tensors import Buffer, element_count
from model_store.signature import TensorSpec
from truce.errors import ErrorCode, InvalidArgument

NPY_MAGIC = b"\x93NUMPY"
NPY_TYPES = frozenset({"application/x-npy", "application/npy"})
JSON_TYPES = frozenset({"application/json", "text/json"})
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

#: canonical code -> the exception name TorchServe puts in ``type``
ERROR_TYPES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "BadRequestException",
    ErrorCode.FAILED_PRECONDITION: "BadRequestException",
    ErrorCode.NOT_FOUND: "ModelNotFoundException",
    ErrorCode.PAYLOAD_TOO_LARGE: "RequestEntityTooLargeException",
    ErrorCode.RESOURCE_EXHAUSTED: "ServiceUnavailableException",
    ErrorCode.UNAVAILABLE: "ServiceUnavailableException",
    ErrorCode.DEADLINE_EXCEEDED: "RequestTimeoutException",
    ErrorCode.UNAUTHENTICATED: "InvalidKeyException",
}


def error_body(status: int, code: ErrorCode, message: str) -> bytes:
    """TorchServe's error document."""
    kind = ERROR_TYPES.get(code, "InternalServerException")
    return orjson.dumps({"code": status, "type": kind, "message": message})


# --- requests ----------------------------------------------------------------------------
def decode_body(
    body: Buffer,
    media: str,
    specs: list[TensorSpec],
    *,
    max_depth: int,
    max_elements: int | None = None,
) -> dict[str, np.ndarray]:
    """The inputs of one request body (see the module docstring)."""
    raw = bytes(body[: len(NPY_MAGIC)])
    if raw == NPY_MAGIC or media in NPY_TYPES:
        spec = _sole(specs, "an .npy body holds one tensor")
        return {spec.name: coerce(spec, load_npy(spec.name, body, max_elements))}
    if media not in JSON_TYPES and len(specs) == 1 and specs[0].datatype == "BYTES":
        return {specs[0].name: raw_bytes(specs[0], body)}
    if not bytes(body[:1024]).strip():
        raise InvalidArgument(
            "the request body is empty; send a JSON tensor, an .npy file or raw bytes"
        )
    doc = parse_json(body, max_depth)
    by_name = {s.name: s for s in specs}
    if isinstance(doc, dict) and doc and all(k in by_name for k in doc):
        values = doc
    elif isinstance(doc, dict) and set(doc) == {"data"}:
        values = {_sole(specs, '{"data": ...} holds one tensor').name: doc["data"]}
    elif isinstance(doc, dict):
        unknown = next((k for k in doc if k not in by_name), "")
        raise InvalidArgument(
            f"unexpected input {unknown[:64]!r}; the model takes {', '.join(by_name)} "
            '(send {"input_name": tensor, ...}, or {"data": tensor} for a single input)'
        )
    else:
        values = {_sole(specs, "a JSON list holds one tensor").name: doc}
    return {
        name: coerce(by_name[name], to_array(name, by_name[name].datatype, v, max_elements))
        for name, v in values.items()
    }


def decode_input_map(
    inputs: Mapping[str, bytes],
    specs: list[TensorSpec],
    *,
    max_depth: int,
    max_elements: int | None = None,
) -> dict[str, np.ndarray]:
    """The inputs of a gRPC ``PredictionsRequest.input`` map.

    ``data`` (or ``body``) holds a whole body as over REST; other keys name one input each,
    whose value is that input's tensor (JSON, ``.npy``, or raw bytes for a BYTES input)."""
    if not inputs:
        raise InvalidArgument('the request has no input; put the tensor under "data"')
    whole = [k for k in ("data", "body") if k in inputs]
    by_name = {s.name: s for s in specs}
    if whole and not (len(inputs) > 1 and all(k in by_name for k in inputs)):
        if len(inputs) > 1:
            raise InvalidArgument(f'give either "{whole[0]}" or one entry per input, not both')
        return decode_body(
            inputs[whole[0]], "", specs, max_depth=max_depth, max_elements=max_elements
        )
    out: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        spec = by_name.get(name)
        if spec is None:
            raise InvalidArgument(
                f"unexpected input {name[:64]!r}; the model takes {', '.join(by_name)} "
                '(or put a whole body under "data")'
            )
        out.update(decode_body(value, "", [spec], max_depth=max_depth, max_elements=max_elements))
    return out


def _sole(specs: list[TensorSpec], what: str) -> TensorSpec:
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise InvalidArgument(
            f"{what}, but the model takes several inputs ({names}): send JSON "
            '{"input_name": tensor, ...}'
        )
    return specs[0]


def raw_bytes(spec: TensorSpec, body: Buffer) -> np.ndarray:
    """A raw body as a one-element BYTES tensor shaped for ``spec`` (-1 dimensions: 1)."""
    if any(d not in (-1, 1) for d in spec.shape):
        raise InvalidArgument(
            f"input {spec.name!r} has shape {spec.shape}: a raw body is one element; "
            "send JSON for several"
        )
    arr = np.empty(1, dtype=object)
    arr[0] = bytes(body)
    return arr.reshape([1] * len(spec.shape))


def load_npy(name: str, body: Buffer, max_elements: int | None = None) -> np.ndarray:
    """An ``.npy`` body, checked before allocation; object (pickled) arrays are refused."""
    buf = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise InvalidArgument(
            f"input {name!r}: the body is not a valid .npy file ({str(exc)[:80]}); "
            "write it with np.save"
        ) from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InvalidArgument(
            f"input {name!r}: .npy arrays of dtype {dtype} are not accepted (no pickles); "
            "send a numeric array"
        )
    count = element_count(name, list(shape), max_elements)
    data = memoryview(body)[buf.tell() :]
    expected = count * dtype.itemsize
    if data.nbytes != expected:
        raise InvalidArgument(
            f"input {name!r} (.npy {dtype} {list(shape)}): expected {expected} bytes of data, "
            f"got {data.nbytes}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count)
    arr = flat.reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))


def coerce(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    """``arr`` in ``spec``'s datatype when that changes no value; unchanged otherwise
    (the dataplane then names the mismatch)."""
    want = spec.dtype
    if arr.dtype == want or spec.datatype == "BYTES" or arr.dtype.kind not in "biuf":
        return arr
    if want.kind == "f" and arr.dtype.kind in "iuf":
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(want)
        if np.array_equal(np.isfinite(out), np.isfinite(arr)):
            return out
        raise InvalidArgument(f"input {spec.name!r} has values outside the {spec.datatype} range")
    if want.kind in "iu" and arr.dtype.kind in "iu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidArgument(
                f"input {spec.name!r} is {spec.datatype} but has values outside "
                f"[{info.min}, {info.max}]"
            )
        return arr.astype(want)
    return arr


# --- responses ---------------------------------------------------------------------------
def encode_outputs(outputs: Mapping[str, np.ndarray]) -> bytes:
    """The prediction: one output as a JSON list, several as an object of lists."""
    if len(outputs) == 1:
        (arr,) = outputs.values()
        doc: Any = json_value(arr)
    else:
        doc = {name: json_value(arr) for name, arr in outputs.items()}
    return orjson.dumps(doc, option=_NUMPY)
