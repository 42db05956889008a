"""Fixtures for the converter tests: a store holding the zoo's source models, copied per test.

    mlp   TorchScript  (TinyMLP, input [-1, 64])
    cnn   torch.export (TinyResNet, input [-1, 3, 64, 64])
    kcnn  Keras 3      (keras_cnn, input [-1, 64, 64, 3], softmax)
    ocnn  ONNX         (TinyResNet through the TorchScript exporter)

Each is version 1. Registering them once per session keeps the suite fast; each test gets
its own copy of the store, so version numbers and "nothing registered" checks are exact.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.runtimes import RuntimeSpec, open_runtime
from model_store.manifest import Manifest
from model_store.register import RegisterOptions, register_path
from model_store.signature import parse_tensor_arg
from model_store.store import ModelStore

SOURCES = {
    "mlp": ("torchscript_mlp", ["input:FP32:-1,64"]),
    "cnn": ("torch_export_cnn", []),
    "kcnn": ("keras_cnn", []),
    "ocnn": ("onnx_cnn", []),
}


@pytest.fixture(scope="session")
def source_store(model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("torch", "tensorflow", "onnxruntime", "ai_edge_litert"):
        pytest.importorskip(
            module, reason=f"converters need {module}: pip install 'truce[convert]'"
        )
    root = tmp_path_factory.mktemp("convert-sources")
    store = ModelStore(root)
    for name, (key, inputs) in SOURCES.items():
        specs = [parse_tensor_arg(i) for i in inputs]
        register_path(store, model_files[key], RegisterOptions(name=name, inputs=specs))
    return root


@pytest.fixture
def store(source_store: Path, tmp_path: Path) -> ModelStore:
    root = tmp_path / "store"
    shutil.copytree(source_store, root)
    return ModelStore(root)


Serve = Callable[[ModelStore, Manifest, dict[str, np.ndarray]], np.ndarray]


@pytest.fixture
def serve() -> Serve:
    """Load a stored version with the gateway's runtime table and run it; the first output."""
    return _serve


def _serve(store: ModelStore, manifest: Manifest, inputs: dict[str, np.ndarray]) -> np.ndarray:
    store.verify(manifest.name, manifest.version)
    spec = RuntimeSpec(
        artifact=store.version_dir(manifest.name, manifest.version) / manifest.artifact,
        format=manifest.format,
        signature=manifest.signature,
    )
    runtime = open_runtime(spec, edge=True)
    runtime.load_blocking()
    try:
        out = runtime.predict_blocking(inputs)
    finally:
        runtime.unload_blocking()
    assert list(out) == [t.name for t in manifest.signature.outputs]
    return next(iter(out.values()))
