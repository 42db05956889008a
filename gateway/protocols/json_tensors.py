"""Tensors as plain nested JSON values (TF Serving and TorchServe bodies): pure functions.

Unlike the Open Inference Protocol, these dialects carry no shape or datatype on the wire:
the shape is the nesting of the lists, and the datatype comes from the model's signature.

- Numbers follow the OIP rules (``gateway/protocols/oip/rest_codec.decode_json_data``): they
  must fit the input's datatype; no floats in integer inputs, no booleans outside BOOL.
- BYTES elements are UTF-8 strings, or ``{"b64": "<base64>"}`` objects (TF Serving's binary
  convention) for arbitrary bytes.
- Ragged lists, a tensor with more dimensions than ``MAX_RANK`` or more elements than the
  server accepts are refused (``InvalidArgument``) before anything large is allocated.
- Outputs: numbers as nested lists (NaN and Infinity as the JSON literals ``NaN``,
  ``Infinity``, as everywhere in Truce); BYTES as strings, or ``{"b64": ...}`` where the bytes
  are not UTF-8 (or always, with ``b64=True``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import orjson

from gateway.protocols.oip.rest_codec import decode_json_data
from gateway.protocols.oip.tensors import MAX_RANK, element_count
from truce.errors import InvalidArgument


def is_b64(value: Any) -> bool:
    """True for a ``{"b64": "..."}`` binary value."""
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def probe_shape(name: str, value: Any) -> list[int]:
    """The shape a nested list would have if it is regular (checked later)."""
    shape: list[int] = []
    node = value
    while isinstance(node, list):
        shape.append(len(node))
        if len(shape) > MAX_RANK:
            raise InvalidArgument(
                f"input {name!r} nests deeper than {MAX_RANK} dimensions; send a flatter tensor"
            )
        if not node:
            break
        node = node[0]
    return shape


def to_array(name: str, datatype: str, value: Any, max_elements: int | None = None) -> np.ndarray:
    """One input tensor from a nested JSON value, for an input of ``datatype``."""
    shape = probe_shape(name, value)
    if datatype == "BYTES":
        count = element_count(name, shape, max_elements)
        flat = _regular_leaves(name, value, shape)
        out = np.empty(count, dtype=object)
        for i, leaf in enumerate(flat):
            out[i] = _bytes_leaf(name, leaf)
        return out.reshape(shape)
    data = value if isinstance(value, list) else [value]
    return decode_json_data(name, datatype, shape, data, max_elements)


def _regular_leaves(name: str, value: Any, shape: list[int]) -> list[Any]:
    """The leaves of ``value``, checking that every list has the length ``shape`` says."""
    leaves: list[Any] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth == len(shape):
            if isinstance(node, list):
                raise InvalidArgument(
                    f"input {name!r} is a ragged list; every row needs the same shape"
                )
            leaves.append(node)
            continue
        if not isinstance(node, list) or len(node) != shape[depth]:
            raise InvalidArgument(
                f"input {name!r} is a ragged list (expected shape {shape}); every row needs "
                "the same shape"
            )
        stack.extend((child, depth + 1) for child in reversed(node))
    return leaves


def _bytes_leaf(name: str, leaf: Any) -> bytes:
    if isinstance(leaf, str):
        return leaf.encode("utf-8", "surrogatepass")
    if is_b64(leaf) and isinstance(leaf["b64"], str):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"input {name!r}: a b64 value is not valid base64") from None
    raise InvalidArgument(
        f'input {name!r} is BYTES: its values must be strings or {{"b64": "..."}} objects'
    )


# --- outputs ---------------------------------------------------------------------------
def json_value(arr: np.ndarray, *, b64: bool = False) -> Any:
    """An output tensor as a value ``orjson.dumps(..., option=OPT_SERIALIZE_NUMPY)`` writes."""
    if arr.dtype.kind in ("O", "S", "U"):
        flat = [_bytes_out(x, b64) for x in arr.ravel()]
        return _nest(flat, arr.shape)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        text = json.dumps(arr.tolist(), allow_nan=True, separators=(",", ":"))
        return orjson.Fragment(text.encode())
    if not arr.flags.c_contiguous or not arr.dtype.isnative:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    if arr.ndim == 0:
        return arr.item()
    return arr


def _bytes_out(item: Any, b64: bool) -> Any:
    data = item.encode() if isinstance(item, str) else bytes(item)
    if not b64:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(data).decode("ascii")}


def _nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if 0 in shape:
        return _empty(shape)
    for size in reversed(shape[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)]
    return flat


def _empty(shape: tuple[int, ...]) -> list[Any]:
    if not shape[1:]:
        return []
    return [_empty(shape[1:]) for _ in range(shape[0])]
