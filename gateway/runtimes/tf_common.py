"""What the two TensorFlow runtimes (SavedModel, Keras) share. Imports TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from gateway.runtimes.common import device_unavailable, parse_device
from model_store.signature import TensorSpec, datatype_of
from truce.errors import InvalidArgument


def tf_device(name: str) -> str:
    """The TF device string (``/CPU:0``, ``/GPU:N``); ``FailedPrecondition`` if TF lacks it."""
    device = parse_device(name)
    if not device.is_cuda:
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    if device.index is None or device.index >= len(gpus):
        raise device_unavailable(name, "TensorFlow", len(gpus))
    return f"/GPU:{device.index}"


def tf_datatype(dtype: Any) -> str:
    """The OIP datatype of a TF dtype (or dtype name); ``tf.string`` is ``BYTES``."""
    dt = tf.as_dtype(dtype)
    if dt == tf.string:
        return "BYTES"
    return datatype_of(np.dtype(dt.as_numpy_dtype))


def tensor_spec(name: str, shape: Any, dtype: Any) -> TensorSpec:
    """A signature entry from a TF/Keras shape (``None`` dims are ``-1``) and dtype."""
    dims = [-1 if d is None else int(d) for d in tf.TensorShape(shape).as_list()]
    return TensorSpec(name=name, datatype=tf_datatype(dtype), shape=dims)


def to_tf(arr: np.ndarray, dtype: Any = None) -> tf.Tensor:
    """A TF tensor for a numpy input; object/bytes arrays become ``tf.string``."""
    if arr.dtype.kind in "OSU":
        return tf.constant(arr.astype(object), dtype=tf.string)
    if dtype is not None and tf.as_dtype(dtype) != tf.as_dtype(arr.dtype):
        raise InvalidArgument(f"input has dtype {arr.dtype}, expected {tf.as_dtype(dtype).name}")
    return tf.convert_to_tensor(arr)


def to_numpy(value: Any) -> np.ndarray:
    """A C-contiguous numpy array for a TF output (strings stay ``bytes`` objects)."""
    arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
