"""The closed table of conversion routes: (source family, target) -> a conversion function.

    source format              family       targets
    torchscript, torch_export  pytorch      torchscript, torchscript_lite, torch_export, onnx,
                                            tflite, executorch
    keras, savedmodel          tensorflow   tflite, onnx, savedmodel (from Keras)
    onnx                       onnx         tflite, torchscript

A target equal to the source format is refused (nothing to do). ``--quantize`` applies to
``tflite`` only. Each route names the Python modules it needs, so a missing extra is reported
before a worker starts.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from converters.job import Converted, ConvertRequest
from truce.errors import FailedPrecondition, InvalidArgument, MissingDependency

#: every target a user may name, in the order the help lists them
TARGETS: tuple[str, ...] = (
    "torchscript",
    "torchscript_lite",
    "torch_export",
    "onnx",
    "tflite",
    "executorch",
    "savedmodel",
)

SOURCE_FAMILY: dict[str, str] = {
    "torchscript": "pytorch",
    "torch_export": "pytorch",
    "keras": "tensorflow",
    "savedmodel": "tensorflow",
    "onnx": "onnx",
}


@dataclass(frozen=True)
class Route:
    """One way from a source family to a target format."""

    family: str
    target: str
    tool: str
    #: (python module, the extra that installs it), checked before any work starts
    needs: tuple[tuple[str, str], ...]
    module: str
    function: str
    quantizable: bool = False

    def convert(self, req: ConvertRequest) -> Converted:
        """Run the conversion (in the worker process)."""
        fn: Callable[[ConvertRequest], Converted] = getattr(
            importlib.import_module(self.module), self.function
        )
        return fn(req)


_TORCH = ("torch", "torch")
_TF = ("tensorflow", "tensorflow")
_ONNX = ("onnx", "onnx")
_ORT = ("onnxruntime", "onnx")
_LITERT = ("ai_edge_litert", "tflite")
_CONVERT_TFLITE_FROM_TORCH = ("onnx2tf", "convert")

_ROUTES: dict[tuple[str, str], Route] = {
    ("pytorch", "torchscript"): Route(
        "pytorch", "torchscript", "torch.jit", (_TORCH,), "converters.torch_paths", "to_torchscript"
    ),
    ("pytorch", "torchscript_lite"): Route(
        "pytorch",
        "torchscript_lite",
        "torch.jit (lite interpreter)",
        (_TORCH,),
        "converters.torch_paths",
        "to_torchscript_lite",
    ),
    ("pytorch", "torch_export"): Route(
        "pytorch",
        "torch_export",
        "torch.export",
        (_TORCH,),
        "converters.torch_paths",
        "to_torch_export",
    ),
    ("pytorch", "onnx"): Route(
        "pytorch",
        "onnx",
        "torch.onnx",
        (_TORCH, _ONNX, _ORT, ("onnxscript", "convert")),
        "converters.torch_paths",
        "to_onnx",
    ),
    ("pytorch", "tflite"): Route(
        "pytorch",
        "tflite",
        "litert-torch / onnx2tf",
        (_TORCH, _ONNX, _TF, _LITERT, _CONVERT_TFLITE_FROM_TORCH),
        "converters.torch_paths",
        "to_tflite",
        quantizable=True,
    ),
    ("pytorch", "executorch"): Route(
        "pytorch",
        "executorch",
        "executorch",
        (_TORCH, ("executorch", "convert")),
        "converters.torch_paths",
        "to_executorch",
    ),
    ("tensorflow", "tflite"): Route(
        "tensorflow",
        "tflite",
        "tf.lite",
        (_TF, _LITERT),
        "converters.tf_paths",
        "to_tflite",
        quantizable=True,
    ),
    ("tensorflow", "onnx"): Route(
        "tensorflow",
        "onnx",
        "tf2onnx",
        (_TF, ("tf2onnx", "convert"), _ONNX, _ORT),
        "converters.tf_paths",
        "to_onnx",
    ),
    ("tensorflow", "savedmodel"): Route(
        "tensorflow",
        "savedmodel",
        "keras",
        (_TF, ("keras", "tensorflow")),
        "converters.tf_paths",
        "to_savedmodel",
    ),
    ("onnx", "tflite"): Route(
        "onnx",
        "tflite",
        "onnx2tf",
        (_ONNX, _TF, ("onnx2tf", "convert"), _LITERT),
        "converters.onnx_paths",
        "to_tflite",
        quantizable=True,
    ),
    ("onnx", "torchscript"): Route(
        "onnx",
        "torchscript",
        "onnx2torch",
        (_ONNX, _TORCH, ("onnx2torch", "convert")),
        "converters.onnx_paths",
        "to_torchscript",
    ),
}


def targets_from(source_format: str) -> list[str]:
    """The targets a model stored as ``source_format`` converts to."""
    family = SOURCE_FAMILY.get(source_format)
    return [t for t in TARGETS if (family, t) in _ROUTES and not _same(source_format, t)]


def route(source_format: str, target: str, quantize: str = "none") -> Route:
    """The route for ``source_format -> target``; a one-line, actionable error otherwise."""
    if target not in TARGETS:
        raise InvalidArgument(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    family = SOURCE_FAMILY.get(source_format)
    if family is None:
        raise FailedPrecondition(
            f"a {source_format} model cannot be converted: convert from the original PyTorch, "
            "TensorFlow/Keras or ONNX version instead"
        )
    possible = targets_from(source_format)
    if _same(source_format, target):
        raise InvalidArgument(
            f"the model is already {target}; pick another target ({', '.join(possible)})"
        )
    found = _ROUTES.get((family, target))
    if found is None:
        raise InvalidArgument(
            f"a {source_format} model cannot be converted to {target}; from {source_format} "
            f"Truce converts to {', '.join(possible)}"
        )
    if quantize != "none" and not found.quantizable:
        raise InvalidArgument(f"--quantize {quantize} applies to --to tflite only, not to {target}")
    return found


def check_installed(r: Route, has: Callable[[str], bool] | None = None) -> None:
    """Raise ``MissingDependency`` naming the first module of ``r`` that is not installed."""
    present = has or _has_module
    for module, extra in r.needs:
        if not present(module):
            raise MissingDependency(module, extra)


def _same(source_format: str, target: str) -> bool:
    return source_format == target


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
