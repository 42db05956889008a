"""TensorFlow ``DataType`` <-> Open Inference Protocol datatypes, and TF Serving constants."""

from __future__ import annotations

from gateway.protocols.tfserving.generated.tensorflow.core.framework import types_pb2
from truce.errors import InvalidArgument

#: the one signature every Truce model has, under TF Serving's default key
SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"

TF_OF: dict[str, int] = {
    "BOOL": types_pb2.DT_BOOL,
    "UINT8": types_pb2.DT_UINT8,
    "UINT16": types_pb2.DT_UINT16,
    "UINT32": types_pb2.DT_UINT32,
    "UINT64": types_pb2.DT_UINT64,
    "INT8": types_pb2.DT_INT8,
    "INT16": types_pb2.DT_INT16,
    "INT32": types_pb2.DT_INT32,
    "INT64": types_pb2.DT_INT64,
    "FP16": types_pb2.DT_HALF,
    "FP32": types_pb2.DT_FLOAT,
    "FP64": types_pb2.DT_DOUBLE,
    "BYTES": types_pb2.DT_STRING,
}
OIP_OF: dict[int, str] = {v: k for k, v in TF_OF.items()}


def tf_dtype(datatype: str) -> int:
    """The TF ``DataType`` of an OIP datatype."""
    return TF_OF[datatype]


def tf_dtype_name(datatype: str) -> str:
    """``FP32`` -> ``DT_FLOAT`` (TF Serving's REST metadata spelling)."""
    return str(types_pb2.DataType.Name(TF_OF[datatype]))


def oip_datatype(name: str, dtype: int) -> str:
    """The OIP datatype of a TF ``DataType``; ``InvalidArgument`` for one Truce cannot carry."""
    try:
        return OIP_OF[dtype]
    except KeyError:
        try:
            shown = types_pb2.DataType.Name(dtype)
        except ValueError:
            shown = str(dtype)
        raise InvalidArgument(
            f"input {name!r} has dtype {shown}, which Truce does not serve; use one of "
            f"{', '.join(types_pb2.DataType.Name(v) for v in OIP_OF)}"
        ) from None


def check_signature(name: str) -> None:
    """Truce models have one signature: ``serving_default`` (or none named)."""
    if name and name != SIGNATURE:
        raise InvalidArgument(
            f"signature {name[:64]!r} not found: the model has one signature, {SIGNATURE!r} "
            "(leave signature_name empty)"
        )
