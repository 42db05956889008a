"""Runtimes by manifest format: a closed table, never an import path from a manifest."""

from __future__ import annotations

import importlib

from gateway.runtimes.base import DeclaredSignature, Runtime, RuntimeSpec
from truce.errors import FailedPrecondition, MissingDependency

# format -> (module, class, python package it needs, extra that installs it)
_KINDS: dict[str, tuple[str, str, str, str]] = {
    "torchscript": ("gateway.runtimes.torchscript", "TorchScriptRuntime", "torch", "torch"),
    "torch_export": ("gateway.runtimes.torch_export", "TorchExportRuntime", "torch", "torch"),
    "savedmodel": ("gateway.runtimes.savedmodel", "SavedModelRuntime", "tensorflow", "tensorflow"),
    "keras": ("gateway.runtimes.keras", "KerasRuntime", "keras", "tensorflow"),
    "onnx": ("gateway.runtimes.onnx", "OnnxRuntime", "onnxruntime", "onnx"),
    "tflite": ("gateway.runtimes.tflite", "TFLiteRuntime", "ai_edge_litert", "tflite"),
    "remote": ("gateway.runtimes.remote", "RemoteRuntime", "httpx", "serve"),
}
# Edge-only formats: run at registration and by parity checks, never served.
_EDGE_KINDS: dict[str, tuple[str, str, str, str]] = {
    "executorch": ("gateway.runtimes.edge_formats", "ExecuTorchRuntime", "executorch", "convert"),
    "torchscript_lite": (
        "gateway.runtimes.edge_formats",
        "TorchScriptLiteRuntime",
        "torch",
        "torch",
    ),
}


def runtime_class(fmt: str, *, edge: bool = False) -> type[Runtime]:
    """The runtime class for ``fmt``; a clear error when it is not servable or installed.

    ``edge=True`` also admits the edge-only formats (registration and parity checks).
    """
    kinds = {**_KINDS, **_EDGE_KINDS} if edge else _KINDS
    try:
        module_name, class_name, package, extra = kinds[fmt]
    except KeyError:
        raise FailedPrecondition(
            f"format {fmt!r} is stored for edge devices and cannot be served by the gateway"
        ) from None
    try:
        importlib.import_module(package)
    except ImportError:
        raise MissingDependency(package, extra) from None
    cls: type[Runtime] = getattr(importlib.import_module(module_name), class_name)
    return cls


def open_runtime(spec: RuntimeSpec, *, edge: bool = False) -> Runtime:
    """A new, not yet loaded, runtime instance for ``spec`` (see ``runtime_class``)."""
    return runtime_class(spec.format, edge=edge)(spec)


__all__ = ["DeclaredSignature", "Runtime", "RuntimeSpec", "open_runtime", "runtime_class"]
