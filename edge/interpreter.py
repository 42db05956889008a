"""Load and run a TFLite model with whichever LiteRT interpreter is installed.

Shared by the edge runner and the gateway's TFLite runtime, so the two cannot drift apart.
This module imports only the standard library, numpy and the interpreter: it runs on
devices where nothing else of Truce is installed.

    EdgeError
    ├── InterpreterUnavailable   neither ai_edge_litert nor tflite_runtime is importable
    ├── BadModel                 the bytes are not a TFLite model the interpreter can run
    └── BadInput                 an input is missing, unknown, or of the wrong dtype/shape

``TFLiteModel`` runs a model through its SignatureDef when it has one (Keras and
``litert-torch`` exports do), else through its input/output tensors; a new batch size
resizes the inputs and re-allocates the tensors. One interpreter is not thread-safe, so
each ``TFLiteModel`` serialises its calls with a lock; use one per worker for parallelism.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: interpreter modules, in order of preference
INTERPRETER_MODULES: tuple[str, ...] = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class EdgeError(Exception):
    """Base of the errors of this module (one line: what is wrong, what to do)."""


class InterpreterUnavailable(EdgeError):
    """No TFLite interpreter package is installed."""


class BadModel(EdgeError):
    """The model cannot be loaded or run by the interpreter."""


class BadInput(EdgeError):
    """The inputs do not match the model."""


def interpreter_class(modules: tuple[str, ...] = INTERPRETER_MODULES) -> Any:
    """The first importable ``Interpreter`` class of ``modules``."""
    for name in modules:
        try:
            return importlib.import_module(name).Interpreter
        except ImportError:
            continue
    raise InterpreterUnavailable(
        "no TFLite interpreter is installed: pip install ai-edge-litert "
        "(or tflite-runtime on devices it does not support)"
    )


def load_interpreter(
    model_path: str | Path | None = None,
    *,
    model_content: bytes | None = None,
    num_threads: int | None = None,
    modules: tuple[str, ...] = INTERPRETER_MODULES,
) -> Any:
    """A new interpreter for a ``.tflite`` file or its bytes (tensors not yet allocated)."""
    if (model_path is None) == (model_content is None):
        raise ValueError("give exactly one of model_path and model_content")
    cls = interpreter_class(modules)
    try:
        if model_content is not None:
            return cls(model_content=model_content, num_threads=num_threads)
        return cls(model_path=str(model_path), num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:
        raise BadModel(
            f"not a TFLite model the interpreter can load ({_first_line(exc)}); "
            "convert it again with the TFLite converter"
        ) from None


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: its name, numpy dtype and shape (``-1`` for dynamic)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    index: int


def _info(name: str, d: Mapping[str, Any]) -> TensorInfo:
    sig = d.get("shape_signature")
    shape = sig if sig is not None and len(sig) else d["shape"]
    return TensorInfo(name, np.dtype(d["dtype"]), tuple(int(x) for x in shape), int(d["index"]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class TFLiteModel:
    """One interpreter for one model, called with and returning numpy arrays by name."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_content: bytes | None = None,
        num_threads: int | None = None,
        signature_key: str | None = None,
        modules: tuple[str, ...] = INTERPRETER_MODULES,
    ) -> None:
        self._lock = threading.Lock()
        self.interpreter = load_interpreter(
            model_path, model_content=model_content, num_threads=num_threads, modules=modules
        )
        self._runner: Any = None
        #: the shape each input tensor is allocated for (tensor mode)
        self._shapes: dict[int, tuple[int, ...]] = {}
        try:
            signatures = self.interpreter.get_signature_list()
        except (AttributeError, ValueError, RuntimeError):
            signatures = {}
        if signature_key is not None and signature_key not in signatures:
            raise BadModel(
                f"the model has no signature {signature_key!r}; it has "
                f"{', '.join(signatures) or 'none'}"
            )
        try:
            if signatures:
                self.signature_key: str | None = signature_key or next(iter(signatures))
                self._runner = self.interpreter.get_signature_runner(self.signature_key)
                ins = self._runner.get_input_details()
                outs = self._runner.get_output_details()
                order = signatures[self.signature_key]
                self.inputs = [_info(n, ins[n]) for n in order["inputs"]]
                self.outputs = [_info(n, outs[n]) for n in order["outputs"]]
            else:
                self.signature_key = None
                self.interpreter.allocate_tensors()
                details = self.interpreter.get_input_details()
                self.inputs = [_info(d["name"], d) for d in details]
                self._shapes = {int(d["index"]): tuple(int(x) for x in d["shape"]) for d in details}
                self.outputs = [_info(d["name"], d) for d in self.interpreter.get_output_details()]
        except (ValueError, RuntimeError) as exc:
            raise BadModel(f"the TFLite model cannot be prepared ({_first_line(exc)})") from None

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference; outputs are new arrays keyed by output name."""
        self._check(inputs)
        with self._lock:
            try:
                if self._runner is not None:
                    # The signature runner resizes and re-allocates on its own.
                    out = self._runner(**{t.name: inputs[t.name] for t in self.inputs})
                    return {t.name: np.ascontiguousarray(out[t.name]) for t in self.outputs}
                return self._predict_tensors(inputs)
            except ValueError as exc:
                raise BadInput(f"the model refused the inputs ({_first_line(exc)})") from None
            except RuntimeError as exc:
                raise BadModel(f"the interpreter failed ({_first_line(exc)})") from None

    def _predict_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self.interpreter
        resized = False
        for t in self.inputs:
            shape = tuple(inputs[t.name].shape)
            if self._shapes.get(t.index) != shape:
                it.resize_tensor_input(t.index, list(shape))
                self._shapes[t.index] = shape
                resized = True
        if resized:
            it.allocate_tensors()
        for t in self.inputs:
            it.set_tensor(t.index, inputs[t.name])
        it.invoke()
        return {t.name: it.get_tensor(t.index) for t in self.outputs}

    def _check(self, inputs: Mapping[str, np.ndarray]) -> None:
        names = {t.name for t in self.inputs}
        extra = sorted(set(inputs) - names)
        if extra:
            raise BadInput(f"unexpected input {extra[0]!r}; the model takes {sorted(names)}")
        for t in self.inputs:
            if t.name not in inputs:
                raise BadInput(f"missing input {t.name!r} ({t.dtype} {list(t.shape)})")
            arr = inputs[t.name]
            strings = arr.dtype.kind in "OSU" and t.dtype.kind in "OS"
            if arr.dtype != t.dtype and not strings:
                raise BadInput(f"input {t.name!r} has dtype {arr.dtype}, expected {t.dtype}")
            ok = len(arr.shape) == len(t.shape) and all(
                want in (-1, got) for want, got in zip(t.shape, arr.shape, strict=True)
            )
            if not ok:
                raise BadInput(
                    f"input {t.name!r} has shape {list(arr.shape)}, expected {list(t.shape)} "
                    "(-1 is any size)"
                )
