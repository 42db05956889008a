"""Open Inference Protocol v2 JSON tensors for the edge runner: decode, check, encode.

Pure functions over parsed JSON, so they are tested without a server. Every malformed
request raises ``InputError`` with one line that names the input and what was expected.

NaN / Inf policy (same as Python's ``json``): requests may carry the literals ``NaN``,
``Infinity`` and ``-Infinity``; responses write non-finite floats with the same literals
(Python, ``tritonclient`` and most JSON libraries in lenient mode read them back).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edge.runner.model import DTYPES, InputError, Spec

#: more elements than this in one tensor is refused before any allocation
MAX_ELEMENTS = 1 << 28
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_KINDS = {"BOOL": "b", "BYTES": "SU"}


def _ints(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_version(text: str) -> str:
    """A syntactically valid version or alias; ``InputError`` (400) otherwise."""
    if not _VERSION.match(text):
        raise InputError(f"malformed model version {text[:40]!r}: use a number or an alias")
    return text


def decode_tensor(item: Any, index: int) -> tuple[str, np.ndarray]:
    """One ``{"name", "shape", "datatype", "data"}`` input as a named numpy array."""
    if not isinstance(item, dict):
        raise InputError(f"inputs[{index}] must be an object with name, shape, datatype, data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"inputs[{index}] has no valid 'name' (a non-empty string)")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(_ints(d) and d >= 0 for d in shape):
        raise InputError(f"input {name!r}: 'shape' must be a list of integers >= 0")
    if len(shape) > 32:
        raise InputError(f"input {name!r}: shape has {len(shape)} dimensions; at most 32")
    count = 1
    for d in shape:
        count *= d
        if count > MAX_ELEMENTS:
            raise InputError(f"input {name!r}: shape {shape} has too many elements")
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise InputError(
            f"input {name!r}: unknown datatype {str(datatype)[:20]!r}; use one of "
            + ", ".join(DTYPES)
        )
    if "parameters" in item and item["parameters"] and "binary_data_size" in item["parameters"]:
        raise InputError("the binary tensor extension is not supported here; send JSON 'data'")
    data = item.get("data")
    if not isinstance(data, list):
        raise InputError(f"input {name!r}: 'data' must be a (flat or nested) JSON list")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, RecursionError):
        raise InputError(f"input {name!r}: 'data' is ragged or mixes types") from None
    if arr.size != count:
        raise InputError(f"input {name!r}: shape {shape} needs {count} values, got {arr.size}")
    want = DTYPES[datatype]
    kinds = _KINDS.get(datatype, "biuf" if want.kind == "f" else "iu")
    if arr.size and arr.dtype.kind not in kinds:
        raise InputError(f"input {name!r}: values are not of datatype {datatype}")
    if datatype == "BYTES":
        flat = [v.encode() if isinstance(v, str) else bytes(v) for v in arr.reshape(-1).tolist()]
        out = np.empty(count, dtype=object)
        out[:] = flat
        return name, out.reshape(shape)
    if want.kind in "iu" and arr.size:
        info = np.iinfo(want)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise InputError(f"input {name!r}: a value is out of range for {datatype}")
    return name, arr.astype(want).reshape(shape)


def decode_request(body: Any) -> tuple[dict[str, np.ndarray], list[str] | None, Any]:
    """``(inputs by name, requested output names or None, request id)`` of an infer body."""
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object with an 'inputs' list")
    items = body.get("inputs")
    if not isinstance(items, list) or not items:
        raise InputError("the request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    for i, item in enumerate(items):
        name, arr = decode_tensor(item, i)
        if name in inputs:
            raise InputError(f"input {name!r} is given twice")
        inputs[name] = arr
    requested: list[str] | None = None
    if body.get("outputs") is not None:
        outs = body["outputs"]
        if not isinstance(outs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs
        ):
            raise InputError("'outputs' must be a list of objects with a 'name'")
        requested = [o["name"] for o in outs]
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InputError("'id' must be a string")
    return inputs, requested, rid


def _jsonable(arr: np.ndarray) -> list[Any]:
    flat = arr.reshape(-1)
    if arr.dtype == object or arr.dtype.kind in "SU":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()
        ]
    values: list[Any] = flat.tolist()
    return values


def check_requested(requested: list[str] | None, specs: list[Spec]) -> None:
    """Refuse unknown requested outputs before the model runs."""
    names = [s.name for s in specs]
    for r in requested or []:
        if r not in names:
            raise InputError(f"unknown output {r!r}; the model has {', '.join(names)}")


def encode_response(
    model: str,
    version: str,
    outputs: dict[str, np.ndarray],
    specs: list[Spec],
    requested: list[str] | None,
    rid: str | None,
) -> dict[str, Any]:
    """The OIP v2 infer response body for ``outputs`` (in signature order)."""
    check_requested(requested, specs)
    body: dict[str, Any] = {
        "model_name": model,
        "model_version": version,
        "outputs": [
            {
                "name": s.name,
                "datatype": s.datatype,
                "shape": list(outputs[s.name].shape),
                "data": _jsonable(outputs[s.name]),
            }
            for s in specs
            if requested is None or s.name in requested
        ],
    }
    if rid is not None:
        body["id"] = rid
    return body
