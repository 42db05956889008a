"""Tensor signatures in Open Inference Protocol terms: names, datatypes, shapes.

Shapes use ``-1`` for a dynamic dimension. Datatypes use the OIP v2 names (``FP32``,
``INT64``, ``BOOL``, ``BYTES`` ...), so a manifest reads the same whichever framework wrote
the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from truce.errors import InvalidArgument

#: OIP v2 datatype name -> numpy dtype. BYTES tensors are numpy object arrays of ``bytes``.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPES: tuple[str, ...] = tuple(NUMPY_DTYPES)
_BY_NUMPY: dict[np.dtype, str] = {v: k for k, v in NUMPY_DTYPES.items() if k != "BYTES"}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/\-]{0,127}$")


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of an OIP datatype name (``FP32`` -> ``float32``)."""
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise InvalidArgument(
            f"unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        ) from None


def datatype_of(dtype: np.dtype | type) -> str:
    """The OIP datatype name of a numpy dtype; strings and bytes map to ``BYTES``."""
    dt = np.dtype(dtype)
    if dt.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise InvalidArgument(f"dtype {dt} has no Open Inference Protocol datatype") from None


class TensorSpec(BaseModel):
    """One named tensor of a model's signature."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    datatype: str
    shape: list[int]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, v: str) -> str:
        numpy_dtype(v)
        return v

    @field_validator("shape")
    @classmethod
    def _valid_shape(cls, v: list[int]) -> list[int]:
        if any(d < -1 for d in v):
            raise ValueError("dimensions must be >= 0, or -1 for a dynamic dimension")
        return v

    @property
    def dtype(self) -> np.dtype:
        return numpy_dtype(self.datatype)

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` matches this spec, ``-1`` matching any size."""
        return len(shape) == len(self.shape) and all(
            want == -1 or want == got for want, got in zip(self.shape, shape, strict=True)
        )


class Signature(BaseModel):
    """A model's inputs and outputs, in order."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


def parse_tensor_arg(text: str) -> TensorSpec:
    """Parse the CLI form ``NAME:DTYPE:SHAPE``, e.g. ``x:FP32:-1,3,64,64``."""
    parts = text.split(":")
    if len(parts) != 3:
        raise InvalidArgument(
            f"bad tensor spec {text!r}: write NAME:DTYPE:SHAPE, e.g. x:FP32:-1,64 "
            "(-1 marks a dynamic dimension, an empty SHAPE a scalar)"
        )
    name, datatype, dims = parts
    if not _NAME.match(name):
        raise InvalidArgument(
            f"bad tensor name {name!r} in {text!r}: use letters, digits and _ . -"
        )
    datatype = datatype.upper()
    numpy_dtype(datatype)
    try:
        shape = [int(d) for d in dims.split(",")] if dims.strip() else []
    except ValueError:
        raise InvalidArgument(
            f"bad shape {dims!r} in {text!r}: comma-separated integers, -1 for dynamic"
        ) from None
    if any(d < -1 for d in shape):
        raise InvalidArgument(f"bad shape {dims!r} in {text!r}: dimensions are >= 0 or -1")
    return TensorSpec(name=name, datatype=datatype, shape=shape)


def example_inputs(
    specs: Sequence[TensorSpec], *, batch: int = 1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Deterministic random inputs for a signature; dynamic dimensions become ``batch``."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(batch if d == -1 else d for d in spec.shape)
        dt = spec.dtype
        if spec.datatype == "BYTES":
            arr = np.empty(shape, dtype=object)
            arr.fill(b"truce")
        elif spec.datatype == "BOOL":
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dt.kind in ("i", "u"):
            arr = rng.integers(0, 10, size=shape).astype(dt)
        else:
            arr = rng.standard_normal(size=shape).astype(dt)
        out[spec.name] = arr
    return out


def check_inputs(specs: Sequence[TensorSpec], inputs: Mapping[str, np.ndarray]) -> None:
    """Raise ``InvalidArgument`` naming the first input that does not match its spec."""
    expected = {s.name for s in specs}
    for name in inputs:
        if name not in expected:
            raise InvalidArgument(
                f"unexpected input {name!r}; the model takes {', '.join(sorted(expected))}"
            )
    for spec in specs:
        if spec.name not in inputs:
            raise InvalidArgument(f"missing input {spec.name!r} ({spec.datatype} {spec.shape})")
        arr = inputs[spec.name]
        got = datatype_of(arr.dtype)
        if got != spec.datatype:
            raise InvalidArgument(
                f"input {spec.name!r} has datatype {got}, expected {spec.datatype}"
            )
        if not spec.accepts_shape(arr.shape):
            raise InvalidArgument(
                f"input {spec.name!r} has shape {list(arr.shape)}, expected {spec.shape} "
                "(-1 is any size)"
            )
