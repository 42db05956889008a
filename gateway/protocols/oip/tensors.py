"""Raw tensor bytes in Open Inference Protocol layout: pure functions, no I/O.

Layout (the binary tensor data extension over REST, ``raw_*_contents`` over gRPC): a
tensor's elements flattened in row-major order, little-endian, no padding; a BYTES element
is a 4-byte little-endian length followed by that many bytes; a BOOL element is one byte.

Every declared shape and size is checked against the bytes actually received before
anything is allocated, so a hostile request cannot make the server read past a buffer or
allocate more than it sent.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from model_store.signature import DATATYPES, NUMPY_DTYPES
from truce.errors import InvalidArgument

#: more dimensions than any model takes; numpy itself stops at 64
MAX_RANK = 32
_LEN = struct.Struct("<I")
Buffer = bytes | bytearray | memoryview


def element_count(name: str, shape: Sequence[int], max_elements: int | None = None) -> int:
    """Elements of a concrete request shape (Python ints: a huge shape cannot overflow)."""
    if len(shape) > MAX_RANK:
        raise InvalidArgument(
            f"input {name!r} has {len(shape)} dimensions; at most {MAX_RANK} are supported"
        )
    if any(d < 0 for d in shape):
        raise InvalidArgument(
            f"input {name!r} has shape {list(shape)}; a request gives every dimension "
            "as a size >= 0 (-1 is only for model metadata)"
        )
    count = math.prod(shape)
    if max_elements is not None and count > max_elements:
        raise InvalidArgument(
            f"input {name!r} has shape {list(shape)} ({count} elements); the server accepts "
            f"at most {max_elements} elements per tensor"
        )
    return count


def wire_dtype(name: str, datatype: str) -> np.dtype:
    """The numpy dtype of an input's datatype; ``InvalidArgument`` for an unknown one."""
    try:
        return NUMPY_DTYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(
            f"input {name!r} has unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        ) from None


def shaped(name: str, flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``flat`` reshaped to ``shape`` (the element count was checked by the caller)."""
    try:
        return flat.reshape(tuple(shape))
    except ValueError as exc:  # e.g. a zero-size tensor whose other dimensions are absurd
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} is not usable: {exc}") from None


def decode_bytes_elements(name: str, raw: Buffer, count: int) -> np.ndarray:
    """``count`` length-prefixed BYTES elements; every length is checked against what remains."""
    view = memoryview(raw).cast("B")
    size_total = len(view)
    if count > size_total // _LEN.size:  # each element needs at least its 4-byte length
        raise InvalidArgument(
            f"input {name!r}: shape declares {count} BYTES elements but the data has only "
            f"{size_total} bytes (each element needs a 4-byte length prefix)"
        )
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + _LEN.size > size_total:
            raise InvalidArgument(
                f"input {name!r}: BYTES element {i} has no length prefix: "
                f"expected {pos + _LEN.size} bytes, got {size_total}"
            )
        (size,) = _LEN.unpack_from(view, pos)
        pos += _LEN.size
        if pos + size > size_total:
            raise InvalidArgument(
                f"input {name!r}: BYTES element {i} declares {size} bytes but only "
                f"{size_total - pos} remain: expected {pos + size} bytes, got {size_total}"
            )
        out[i] = bytes(view[pos : pos + size])
        pos += size
    if pos != size_total:
        raise InvalidArgument(
            f"input {name!r}: {count} BYTES elements use {pos} bytes: "
            f"expected {pos} bytes, got {size_total}"
        )
    return out


def decode_raw(
    name: str, datatype: str, shape: Sequence[int], raw: Buffer, max_elements: int | None = None
) -> np.ndarray:
    """One input tensor from its raw bytes (zero-copy for numeric types)."""
    dtype = wire_dtype(name, datatype)
    count = element_count(name, shape, max_elements)
    if datatype == "BYTES":
        return shaped(name, decode_bytes_elements(name, raw, count), shape)
    got = memoryview(raw).nbytes
    expected = count * dtype.itemsize
    if got != expected:
        raise InvalidArgument(
            f"input {name!r} ({datatype} {list(shape)}): expected {expected} bytes, got {got}"
        )
    if datatype == "BOOL":  # any non-zero byte is true; numpy would keep other values as-is
        flat = np.frombuffer(raw, dtype=np.uint8) != 0
    else:
        flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        if flat.dtype != dtype:  # big-endian host: native order for the runtimes
            flat = flat.astype(dtype)
    return shaped(name, flat, shape)


def encode_raw(arr: np.ndarray, datatype: str) -> bytes:
    """A tensor's raw bytes (see the module docstring for the layout)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in arr.ravel():
            data = item.encode() if isinstance(item, str) else bytes(item)
            parts += (_LEN.pack(len(data)), data)
        return b"".join(parts)
    dtype = NUMPY_DTYPES[datatype].newbyteorder("<")
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()
