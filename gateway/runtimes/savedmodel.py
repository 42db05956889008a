"""TensorFlow SavedModel folders, served through one signature (``serving_default``).

The signature is ``spec.options["signature_name"]`` when given. Inputs and outputs are
declared by the signature itself (``structured_input_signature`` / ``structured_outputs``).
The object returned by ``tf.saved_model.load`` is kept alive for as long as the signature
function is used (the function does not own the variables).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from gateway.runtimes.base import Arrays, DeclaredSignature, Runtime
from gateway.runtimes.common import bad_artifact, bad_inputs, keyed_inputs, output_names
from gateway.runtimes.tf_common import tensor_spec, tf_device, to_numpy, to_tf
from truce.errors import InvalidArgument

DEFAULT_SIGNATURE = "serving_default"


class SavedModelRuntime(Runtime):
    """Serves one signature of a SavedModel on ``cpu`` / ``cuda`` / ``cuda:N`` (a TF GPU)."""

    formats = ("savedmodel",)

    def _load(self) -> None:
        self._device = tf_device(self.spec.device)
        path = self.spec.artifact
        if not path.is_dir() or not any(
            (path / f).is_file() for f in ("saved_model.pb", "saved_model.pbtxt")
        ):
            raise InvalidArgument(
                "not a SavedModel folder (it has no saved_model.pb); export one with "
                "tf.saved_model.save(obj, DIR) or, in Keras 3, "
                "model.export(DIR, format='tf_saved_model')"
            )
        key = str(self.spec.options.get("signature_name", DEFAULT_SIGNATURE))
        try:
            with tf.device(self._device):
                self._object: Any = tf.saved_model.load(str(path))
        except (OSError, ValueError, KeyError, tf.errors.OpError) as exc:
            raise bad_artifact(
                "SavedModel", exc, "export it again with the server's TensorFlow version"
            ) from None
        signatures = self._object.signatures
        if key not in signatures:
            raise InvalidArgument(
                f"the SavedModel has no signature {key!r} (it has "
                f"{', '.join(signatures) or 'none'}); set the serving option signature_name"
            )
        self._fn = signatures[key]
        _, kwargs = self._fn.structured_input_signature
        self._inputs = [tensor_spec(n, s.shape, s.dtype) for n, s in kwargs.items()]
        self._input_dtypes = {n: s.dtype for n, s in kwargs.items()}
        outputs = self._fn.structured_outputs
        if not isinstance(outputs, dict):
            raise InvalidArgument(
                f"signature {key!r} does not return a dict of named tensors; export it with "
                "named outputs"
            )
        self._outputs = [tensor_spec(n, t.shape, t.dtype) for n, t in outputs.items()]

    def _predict(self, inputs: Arrays) -> Arrays:
        feed = keyed_inputs(self, inputs, [t.name for t in self._inputs])
        try:
            with tf.device(self._device):
                tensors = {n: to_tf(a, self._input_dtypes.get(n)) for n, a in feed.items()}
                result = self._fn(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise bad_inputs(exc) from None
        declared = [t.name for t in self._outputs]
        names = output_names(self, declared, len(declared))
        return {new: to_numpy(result[old]) for new, old in zip(names, declared, strict=True)}

    def _unload(self) -> None:
        del self._fn, self._object

    def _declared_signature(self) -> DeclaredSignature:
        return DeclaredSignature(inputs=list(self._inputs), outputs=list(self._outputs))
