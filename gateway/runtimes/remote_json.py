"""JSON answers of remote servers (TorchServe, TF Serving REST) as named numpy outputs, and
the bodies TorchServe's handlers read (``torchserve_body``).

These answers carry no datatype: each output takes its datatype from the model's signature.
While a remote model is being registered the signature is not known yet; then an output is
named ``output__0``... and its datatype read off the values (floats become FP32, the
datatype PyTorch and TF models compute in; integers INT64; strings BYTES).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from gateway.protocols.json_tensors import is_b64, json_value, to_array
from gateway.runtimes.base import Arrays
from gateway.runtimes.remote_errors import bad_answer
from model_store.signature import TensorSpec
from truce.errors import TruceError

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes, where: str) -> Any:
    """Parse a remote JSON answer (NaN/Infinity literals allowed)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise bad_answer(where, "it is not JSON") from None


def guess_datatype(value: Any) -> str:
    """The datatype of a JSON tensor whose signature is not known yet."""
    node = value
    while isinstance(node, list) and node:
        node = node[0]
    if isinstance(node, bool):
        return "BOOL"
    if isinstance(node, int):
        return "INT64"
    if isinstance(node, str) or is_b64(node):
        return "BYTES"
    return "FP32"


def outputs_from_json(doc: Any, specs: Sequence[TensorSpec], where: str) -> Arrays:
    """Outputs from a JSON answer: one tensor, or an object of tensors keyed by output name."""
    names = [s.name for s in specs]
    if isinstance(doc, dict) and not is_b64(doc) and (len(names) != 1 or names[0] in doc):
        values = doc
        if names and any(n not in values for n in names):
            missing = next(n for n in names if n not in values)
            raise bad_answer(where, f"it has no output {missing!r}")
    elif len(names) > 1:
        raise bad_answer(where, f"one tensor, but the model has outputs {', '.join(names)}")
    else:
        values = {names[0] if names else "output__0": doc}
    by_name = {s.name: s for s in specs}
    out: Arrays = {}
    for name, value in values.items():
        if specs and name not in by_name:
            continue  # an extra output the signature does not list
        spec = by_name.get(name)
        datatype = spec.datatype if spec is not None else guess_datatype(value)
        try:
            out[name] = to_array(name, datatype, value)
        except TruceError as exc:
            raise bad_answer(where, exc.message) from None
    return out


def torchserve_body(inputs: Arrays, kind: str) -> tuple[bytes, str]:
    """What TorchServe's handlers read: one tensor as JSON (or .npy), several as an object."""
    if kind == "npy" and len(inputs) == 1:
        (arr,) = inputs.values()
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        return buf.getvalue(), "application/x-npy"
    if len(inputs) == 1:
        (arr,) = inputs.values()
        return orjson.dumps(json_value(arr), option=_NUMPY), "application/json"
    doc = {name: json_value(arr) for name, arr in inputs.items()}
    return orjson.dumps(doc, option=_NUMPY), "application/json"
