"""One conformance suite every serving runtime passes.

Each case names a tiny model (``truce.zoo``, seed 0) in one format, the signature the
artifact must declare, and how to call the framework directly. One generic test loads the
runtime, checks the declared signature, compares outputs with the framework for batch 1
and 4, runs the async API and unloads; another checks that an absent GPU is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.runtimes import DeclaredSignature, Runtime, RuntimeSpec, open_runtime
from model_store.signature import Signature, TensorSpec, example_inputs
from truce import zoo
from truce.errors import FailedPrecondition

Reference = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@functools.cache
def _torch_model(kind: str) -> Any:
    return zoo.TinyMLP() if kind == "mlp" else zoo.TinyResNet()


@functools.cache
def _keras_model(kind: str) -> Any:
    return zoo.keras_mlp() if kind == "mlp" else zoo.keras_cnn()


def torch_ref(kind: str) -> Reference:
    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            (x,) = inputs.values()
            return [_torch_model(kind)(torch.from_numpy(x)).numpy()]

    return run


def keras_ref(kind: str) -> Reference:
    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        (x,) = inputs.values()
        return [np.asarray(_keras_model(kind)(x, training=False))]

    return run


def spec(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name=name, datatype="FP32", shape=list(shape))


#: modules each runtime kind needs (skipped with a reason when an extra is missing)
NEEDS = {
    "torchscript": ("torch",),
    "torch_export": ("torch",),
    "onnx": ("onnxruntime", "torch"),
    "keras": ("keras",),
    "savedmodel": ("tensorflow", "keras"),
    "tflite": ("ai_edge_litert", "keras"),
    "executorch": ("executorch", "torch"),
    "torchscript_lite": ("torch",),
}
#: stored for devices, not served: opened with ``edge=True`` (registration, parity checks)
EDGE_FORMATS = ("executorch", "torchscript_lite")


@dataclass(frozen=True)
class Case:
    """A model in one format: what it must declare and how to compute its outputs."""

    key: str  # model_files key
    format: str
    signature: Signature  # the manifest's signature (what registration records)
    reference: Reference
    atol: float = 1e-5

    @property
    def declares(self) -> bool:
        """TorchScript (all flavours) and ExecuTorch carry no signature; the others do."""
        return self.format not in ("torchscript", *EDGE_FORMATS)


def sig(inp: str, shape: tuple[int, ...], out: str) -> Signature:
    return Signature(inputs=[spec(inp, *shape)], outputs=[spec(out, -1, 10)])


MLP, CNN, NHWC = (-1, 64), (-1, 3, 64, 64), (-1, 64, 64, 3)
CASES = [
    Case("torchscript_mlp", "torchscript", sig("input", MLP, "output"), torch_ref("mlp"), 0.0),
    Case("torchscript_cnn", "torchscript", sig("x", CNN, "output"), torch_ref("cnn"), 0.0),
    Case("torch_export_mlp", "torch_export", sig("input", MLP, "linear_2"), torch_ref("mlp")),
    Case("torch_export_cnn", "torch_export", sig("x", CNN, "linear"), torch_ref("cnn")),
    Case("onnx_mlp", "onnx", sig("input", MLP, "output"), torch_ref("mlp")),
    Case("onnx_cnn", "onnx", sig("input", CNN, "output"), torch_ref("cnn"), 1e-4),
    Case("keras_mlp", "keras", sig("x", MLP, "logits"), keras_ref("mlp")),
    Case("keras_cnn", "keras", sig("image", NHWC, "probs"), keras_ref("cnn"), 1e-6),
    Case("savedmodel_mlp", "savedmodel", sig("x", MLP, "output_0"), keras_ref("mlp")),
    Case("savedmodel_cnn", "savedmodel", sig("image", NHWC, "output_0"), keras_ref("cnn"), 1e-6),
    Case("tflite_mlp", "tflite", sig("x", MLP, "output_0"), keras_ref("mlp"), 1e-4),
    Case("tflite_cnn", "tflite", sig("image", NHWC, "output_0"), keras_ref("cnn"), 1e-5),
    Case("executorch_mlp", "executorch", sig("input", MLP, "output"), torch_ref("mlp"), 1e-5),
    Case("torchscript_lite_mlp", "torchscript_lite", sig("input", MLP, "output"), torch_ref("mlp")),
]
SERVED_FORMATS = sorted({c.format for c in CASES} - set(EDGE_FORMATS))


def _open(case: Case, model_files: dict[str, Path], **kw: Any) -> Runtime:
    for module in NEEDS[case.format]:
        pytest.importorskip(module)
    kw.setdefault("signature", case.signature)
    spec = RuntimeSpec(artifact=model_files[case.key], format=case.format, **kw)
    return open_runtime(spec, edge=case.format in EDGE_FORMATS)


def _assert_close(case: Case, got: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> None:
    names = [t.name for t in case.signature.outputs]
    assert list(got) == names
    for name, want in zip(names, case.reference(inputs), strict=True):
        arr = got[name]
        assert arr.dtype == np.float32
        assert arr.flags.c_contiguous
        assert arr.shape == want.shape
        np.testing.assert_allclose(arr, want, rtol=1e-5, atol=case.atol)


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
async def test_runtime_conformance(case: Case, model_files: dict[str, Path]) -> None:
    rt = _open(case, model_files)
    rt.load_blocking()

    declared = rt.declared_signature()
    if case.declares:
        assert declared == DeclaredSignature(case.signature.inputs, case.signature.outputs)
    else:
        assert declared == DeclaredSignature()

    for batch in (1, 4):
        inputs = example_inputs(case.signature.inputs, batch=batch, seed=batch)
        _assert_close(case, rt.predict_blocking(inputs), inputs)

    # the gateway's path: the same runtime driven through its own worker thread
    inputs = example_inputs(case.signature.inputs, batch=3, seed=7)
    _assert_close(case, await rt.infer(inputs), inputs)
    await rt.unload()
    assert not rt.loaded
    with pytest.raises(FailedPrecondition, match="not loaded"):
        rt.predict_blocking(inputs)

    # async load from scratch works too
    await rt.load()
    _assert_close(case, await rt.infer(inputs), inputs)
    await rt.unload()


@pytest.mark.parametrize("fmt", SERVED_FORMATS)
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_absent_gpu_is_refused(fmt: str, device: str, model_files: dict[str, Path]) -> None:
    case = next(c for c in CASES if c.format == fmt)
    rt = _open(case, model_files, device=device)
    with pytest.raises(FailedPrecondition, match=f"device '{device}' is not available") as err:
        rt.load_blocking()
    assert "serving device" in str(err.value)
    assert not rt.loaded


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_outputs_named_without_signature(case: Case, model_files: dict[str, Path]) -> None:
    """While registering, no signature is known yet: declared names, else output__0."""
    rt = _open(case, model_files, signature=None)
    rt.load_blocking()
    name = case.signature.inputs[0].name
    inputs = example_inputs(case.signature.inputs, batch=2)
    out = rt.predict_blocking({name: inputs[name]})
    want = [t.name for t in case.signature.outputs] if case.declares else ["output__0"]
    assert list(out) == want
    rt.unload_blocking()
