"""TF Serving REST bodies <-> core types: pure functions, no I/O.

Predict requests come in TF Serving's two formats
(https://www.tensorflow.org/tfx/serving/api_rest):

- row: ``{"signature_name": ..., "instances": [row, ...]}``; a row is the value of the only
  input, or an object ``{input: value}``; rows are stacked along a new first dimension and
  the answer is ``{"predictions": [...]}`` (one value per row, or one object per row when
  the model has several outputs);
- columnar: ``{"inputs": value}`` or ``{"inputs": {input: value}}``, each value a whole
  tensor; the answer is ``{"outputs": value}`` or ``{"outputs": {output: value}}``.

Values are nested JSON lists, with ``{"b64": ...}`` for binary strings; outputs whose name
ends in ``_bytes`` are always written as ``{"b64": ...}`` (TF Serving's rule). Errors are
``{"error": "..."}``, written by the gateway's HTTP app.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from gateway.protocols.json_tensors import is_b64, json_value, to_array
from gateway.protocols.oip.rest_codec import parse_json
from gateway.protocols.oip.tensors import Buffer
from gateway.protocols.tfserving.dtypes import PREDICT_METHOD, SIGNATURE, check_signature
from gateway.protocols.tfserving.dtypes import tf_dtype_name as _tf_name
from gateway.types import InferRequest, InferResponse, ModelMetadata
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_KEYS = frozenset({"signature_name", "instances", "inputs"})


def decode_predict(
    body: Buffer, inputs: list[TensorSpec], *, max_depth: int, max_elements: int | None = None
) -> tuple[InferRequest, bool]:
    """A ``:predict`` body as an InferRequest, and whether it used the row format."""
    doc = parse_json(body, max_depth)
    if not isinstance(doc, dict):
        raise InvalidArgument(
            'the request body must be a JSON object: {"instances": [...]} or {"inputs": ...}'
        )
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InvalidArgument(
            f"unknown key {unknown[0][:64]!r} in the request; use signature_name and one of "
            "instances or inputs"
        )
    signature = doc.get("signature_name", "")
    if not isinstance(signature, str):
        raise InvalidArgument("signature_name must be a string")
    check_signature(signature)
    if ("instances" in doc) == ("inputs" in doc):
        raise InvalidArgument(
            "the request needs exactly one of 'instances' (row format) or 'inputs' "
            "(columnar format)"
        )
    specs = {s.name: s for s in inputs}
    row = "instances" in doc
    values = _rows(doc["instances"], inputs) if row else _columns(doc["inputs"], inputs)
    arrays: dict[str, np.ndarray] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            raise InvalidArgument(
                f"unexpected input {name[:64]!r}; the model takes {', '.join(specs)}"
            )
        arrays[name] = to_array(name, spec.datatype, value, max_elements)
    return InferRequest(inputs=arrays, protocol="tfserving-rest"), row


def _sole(inputs: list[TensorSpec], how: str) -> str:
    if len(inputs) != 1:
        names = ", ".join(s.name for s in inputs)
        raise InvalidArgument(f"the model takes several inputs ({names}): {how}")
    return inputs[0].name


def _named(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def _rows(instances: Any, inputs: list[TensorSpec]) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("'instances' must be a non-empty list, one entry per row")
    if not any(_named(r) for r in instances):
        how = 'give each instance as an object {"input_name": value, ...}'
        return {_sole(inputs, how): instances}
    keys = instances[0].keys() if _named(instances[0]) else None
    for i, r in enumerate(instances):
        if not _named(r) or r.keys() != keys:
            raise InvalidArgument(
                f"instances[{i}] must be an object with the same inputs as instances[0] "
                f"({', '.join(keys or [])})"
            )
    assert keys is not None
    return {name: [r[name] for r in instances] for name in keys}


def _columns(value: Any, inputs: list[TensorSpec]) -> dict[str, Any]:
    if _named(value):
        if not value:
            raise InvalidArgument("'inputs' is an empty object; name every input")
        return dict(value)
    return {_sole(inputs, 'send {"inputs": {"input_name": value, ...}}'): value}


def encode_predict(resp: InferResponse, row: bool) -> bytes:
    """The ``:predict`` answer in the format the request used."""
    outputs = resp.outputs
    if not row:
        if len(outputs) == 1:
            (arr,) = outputs.values()
            doc: dict[str, Any] = {"outputs": json_value(arr, b64=_b64(resp, 0))}
        else:
            doc = {
                "outputs": {n: json_value(a, b64=n.endswith("_bytes")) for n, a in outputs.items()}
            }
        return orjson.dumps(doc, option=_NUMPY)
    rows = {a.shape[0] if a.ndim else -1 for a in outputs.values()}
    if len(rows) != 1 or -1 in rows:
        raise InvalidArgument(
            "the model's outputs do not share a batch dimension, so they cannot be returned "
            'as rows; send the columnar format {"inputs": ...}'
        )
    if len(outputs) == 1:
        (arr,) = outputs.values()
        predictions: Any = json_value(arr, b64=_b64(resp, 0))
    else:
        (n_rows,) = rows
        predictions = [
            {n: json_value(a[i], b64=n.endswith("_bytes")) for n, a in outputs.items()}
            for i in range(n_rows)
        ]
    return orjson.dumps({"predictions": predictions}, option=_NUMPY)


def _b64(resp: InferResponse, i: int) -> bool:
    return list(resp.outputs)[i].endswith("_bytes")


# --- model status and metadata ----------------------------------------------------------
NOT_READY = "the version is not ready: it is loading, or failed to load (see the admin index)"


def encode_status(versions: list[tuple[str, bool]]) -> bytes:
    """``GET /v1/models/{m}[/versions/{v}]``: ``(version, ready)`` pairs, TF Serving's shape.

    A version that is not ready is reported ``UNKNOWN`` with error code ``UNAVAILABLE``."""
    ok = {"error_code": "OK", "error_message": ""}
    down = {"error_code": "UNAVAILABLE", "error_message": NOT_READY}
    return orjson.dumps(
        {
            "model_version_status": [
                {
                    "version": v,
                    "state": "AVAILABLE" if ready else "UNKNOWN",
                    "status": ok if ready else down,
                }
                for v, ready in versions
            ]
        }
    )


def signature_def(meta: ModelMetadata) -> dict[str, Any]:
    """The model's signature as TF Serving's JSON ``SignatureDef``."""
    return {
        "inputs": {s.name: _tensor_info(s) for s in meta.inputs},
        "outputs": {s.name: _tensor_info(s) for s in meta.outputs},
        "method_name": PREDICT_METHOD,
    }


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": _tf_name(spec.datatype),
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name,
    }


def encode_metadata(meta: ModelMetadata, version: str) -> bytes:
    """``GET .../metadata``: TF Serving's ``GetModelMetadataResponse`` as JSON."""
    return orjson.dumps(
        {
            "model_spec": {"name": meta.name, "signature_name": "", "version": version},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature_def(meta)}}},
        }
    )
