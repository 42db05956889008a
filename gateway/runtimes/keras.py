"""Keras 3 ``.keras`` files, loaded with ``safe_mode=True`` (no lambdas, no pickles).

The declared signature comes from the functional model's ``inputs`` / ``outputs``. Calls
go through one concrete ``tf.function`` traced at load time for the declared input specs (a
dynamic batch does not retrace), several times faster than an eager Keras call.
"""

from __future__ import annotations

import zipfile
from typing import Any

import keras
import tensorflow as tf

from gateway.runtimes.base import Arrays, DeclaredSignature, Runtime
from gateway.runtimes.common import bad_artifact, bad_inputs, keyed_inputs, output_names
from gateway.runtimes.tf_common import tensor_spec, tf_device, to_numpy, to_tf
from model_store.signature import TensorSpec
from truce.errors import FailedPrecondition, InvalidArgument


class KerasRuntime(Runtime):
    """Serves a Keras 3 model on ``cpu`` / ``cuda`` / ``cuda:N`` (TensorFlow backend)."""

    formats = ("keras",)

    def _load(self) -> None:
        if keras.backend.backend() != "tensorflow":
            raise FailedPrecondition(
                f"the Keras backend is {keras.backend.backend()!r}; Truce serves Keras models "
                "with the TensorFlow backend: unset KERAS_BACKEND or set it to tensorflow"
            )
        self._device = tf_device(self.spec.device)
        path = self.spec.artifact
        if path.suffix != ".keras" or not zipfile.is_zipfile(path):
            raise InvalidArgument(
                "not a Keras 3 .keras file (legacy .h5 files are not accepted); "
                "save it with model.save('model.keras')"
            )
        try:
            with tf.device(self._device):
                self._model: Any = keras.saving.load_model(path, safe_mode=True, compile=False)
        except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as exc:
            raise bad_artifact(
                "Keras model",
                exc,
                "save it with model.save('model.keras') (custom layers must be registered "
                "with keras.saving.register_keras_serializable and importable by the server)",
            ) from None
        self._inputs, self._outputs = _declared(self._model)
        self._fn = self._trace() if self._inputs else None

    def _trace(self) -> Any:
        model, multi = self._model, len(self._inputs) > 1
        specs = [
            tf.TensorSpec([None if d == -1 else d for d in t.shape], t.dtype, name=t.name)
            for t in self._inputs
        ]

        def call(*xs: Any) -> Any:
            return model(list(xs) if multi else xs[0], training=False)

        with tf.device(self._device):
            # the concrete function skips tf.function's dispatch (~1/3 of a small call)
            return tf.function(call, input_signature=specs).get_concrete_function()

    def _predict(self, inputs: Arrays) -> Arrays:
        declared = [t.name for t in self._inputs]
        feed = list(keyed_inputs(self, inputs, declared).values())
        dtypes: list[Any] = [t.dtype for t in self._inputs] or [None] * len(feed)
        try:
            with tf.device(self._device):
                xs = [to_tf(a, dt) for a, dt in zip(feed, dtypes, strict=True)]
                if self._fn is not None:
                    result = self._fn(*xs)
                else:
                    result = self._model(xs if len(xs) > 1 else xs[0], training=False)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise bad_inputs(exc) from None
        if isinstance(result, dict):
            values, names = list(result.values()), [str(k) for k in result]
        else:
            values = list(result) if isinstance(result, list | tuple) else [result]
            names = [t.name for t in self._outputs]
        names = output_names(self, names, len(values))
        return {n: to_numpy(v) for n, v in zip(names, values, strict=True)}

    def _unload(self) -> None:
        del self._fn, self._model

    def _declared_signature(self) -> DeclaredSignature:
        return DeclaredSignature(inputs=list(self._inputs), outputs=list(self._outputs))


def _declared(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a functional model; empty for subclassed models."""
    try:
        ins, outs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        return [], []
    names = list(getattr(model, "output_names", None) or [t.name for t in outs])
    inputs = [tensor_spec(t.name, t.shape, t.dtype) for t in ins]
    outputs = [tensor_spec(n, t.shape, t.dtype) for n, t in zip(names, outs, strict=True)]
    return inputs, outputs
