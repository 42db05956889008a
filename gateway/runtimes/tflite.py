"""TFLite models on the LiteRT interpreter, through ``edge/interpreter.py``.

The edge runner uses the same loader, so what the gateway serves and what a device runs
cannot drift apart. An interpreter is not thread-safe: each runtime instance owns one, and
the base class runs every call on the instance's single thread. TFLite runs on the CPU
only here; a ``cuda`` device is refused.

Options: ``threads`` (interpreter threads), ``signature_name`` (SignatureDef key).
"""

from __future__ import annotations

import numpy as np

from edge.interpreter import BadInput, BadModel, InterpreterUnavailable, TFLiteModel
from gateway.runtimes.base import Arrays, DeclaredSignature, Runtime
from gateway.runtimes.common import device_unavailable, keyed_inputs, output_names, parse_device
from model_store.signature import TensorSpec, datatype_of
from truce.errors import InvalidArgument, MissingDependency


class TFLiteRuntime(Runtime):
    """Serves a ``.tflite`` model with one LiteRT interpreter per instance (CPU)."""

    formats = ("tflite",)

    def _load(self) -> None:
        if parse_device(self.spec.device).is_cuda:
            raise device_unavailable(self.spec.device, "the TFLite runtime (CPU only)", 0)
        threads = self.spec.options.get("threads")
        key = self.spec.options.get("signature_name")
        try:
            self._model = TFLiteModel(
                self.spec.artifact,
                num_threads=int(threads) if threads is not None else None,
                signature_key=str(key) if key is not None else None,
            )
        except InterpreterUnavailable:
            raise MissingDependency("ai-edge-litert", "tflite") from None
        except BadModel as exc:
            raise InvalidArgument(str(exc)) from None
        self._inputs = [_spec(t.name, t.dtype, t.shape) for t in self._model.inputs]
        self._outputs = [_spec(t.name, t.dtype, t.shape) for t in self._model.outputs]

    def _predict(self, inputs: Arrays) -> Arrays:
        feed = keyed_inputs(self, inputs, [t.name for t in self._inputs])
        try:
            result = self._model.predict(feed)
        except (BadInput, BadModel) as exc:
            raise InvalidArgument(str(exc)) from None
        produced = [t.name for t in self._outputs]
        names = output_names(self, produced, len(produced))
        return {new: result[old] for new, old in zip(names, produced, strict=True)}

    def _unload(self) -> None:
        del self._model

    def _declared_signature(self) -> DeclaredSignature:
        return DeclaredSignature(inputs=list(self._inputs), outputs=list(self._outputs))


def _spec(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype_of(dtype), shape=list(shape))
