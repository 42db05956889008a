"""Fixtures for the edge tests: tiny TFLite bundles, signing keys, a clean runner env."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

BundleFactory = Callable[..., Path]


def tflite_signature(path: Path) -> dict[str, Any]:
    """The bundle signature of a .tflite file, as the interpreter reports it."""
    from edge.interpreter import TFLiteModel
    from edge.runner.model import DTYPES

    m = TFLiteModel(path)
    by_dtype = {v: k for k, v in DTYPES.items() if k != "BYTES"}

    def spec(t: Any) -> dict[str, Any]:
        return {"name": t.name, "datatype": by_dtype[t.dtype], "shape": list(t.shape)}

    return {"inputs": [spec(t) for t in m.inputs], "outputs": [spec(t) for t in m.outputs]}


@pytest.fixture(scope="session")
def tflite_mlp(model_files: dict[str, Path]) -> Path:
    pytest.importorskip("ai_edge_litert")
    return model_files["tflite_mlp"]


def build_test_bundle(
    out: Path,
    tflite: Path,
    *,
    model: Path | None = None,
    fmt: str = "tflite",
    signature: dict[str, Any] | None = None,
    sign_key: Path | None = None,
    target: str = "rpi",
    version: int = 1,
) -> Path:
    """A bundle of ``model`` (default: the TFLite MLP) named ``mlp`` at ``out``."""
    from edge.bundle import BundleSpec, build_bundle

    spec = BundleSpec(
        model_file=model or tflite,
        format=fmt,
        name="mlp",
        version=version,
        target=target,
        signature=signature or tflite_signature(tflite),
        source={"name": "mlp", "version": version, "format": "keras"},
        readme="# test bundle\n",
    )
    return build_bundle(spec, out, sign_key=sign_key)


@pytest.fixture
def make_bundle(tmp_path: Path, tflite_mlp: Path) -> BundleFactory:
    """``make_bundle(name="b", model=path, sign_key=None, ...)`` -> bundle dir."""

    def make(name: str = "b", **kw: Any) -> Path:
        return build_test_bundle(tmp_path / "bundles" / name, tflite_mlp, **kw)

    return make


@pytest.fixture
def signing_key(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("cryptography")
    from edge.signing import keygen

    (tmp_path / "keys").mkdir(exist_ok=True)
    return keygen(tmp_path / "keys" / "edge.key")


def runner_env() -> dict[str, str]:
    """An environment where only the bundle's own copy of the runner is importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRUCE_EDGE_TRUSTED_KEY")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def runner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge.runner", *args]


# --- stores and exported bundles ------------------------------------------------------------
@pytest.fixture(scope="session")
def tflite_store_root(tflite_mlp: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the TFLite MLP registered as ``mlp`` version 1."""
    from model_store.register import RegisterOptions, register_path
    from model_store.store import ModelStore

    root = tmp_path_factory.mktemp("edge-store")
    register_path(ModelStore(root), tflite_mlp, RegisterOptions(name="mlp"))
    return root


@pytest.fixture
def tflite_store(tflite_store_root: Path, tmp_path: Path) -> Path:
    """A private copy of ``tflite_store_root`` (tests may add versions)."""
    import shutil

    shutil.copytree(tflite_store_root, tmp_path / "store")
    return tmp_path / "store"


@pytest.fixture(scope="session")
def pi_exports(
    model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A PyTorch and a Keras MLP, registered, converted to TFLite and exported for ``rpi``.

    ``{"store": Path, "bundles": {"torch": dir, "keras": dir}}``; the conversions go through
    ``converters`` (parity-checked), as ``truce edge export`` does.
    """
    for module in ("torch", "tensorflow", "ai_edge_litert"):
        pytest.importorskip(module)
    from edge.export import ExportOptions, export_bundle
    from model_store.register import RegisterOptions, register_path
    from model_store.signature import parse_tensor_arg
    from model_store.store import ModelStore

    work = tmp_path_factory.mktemp("pi-exports")
    store = ModelStore(work / "store")
    register_path(
        store,
        model_files["torchscript_mlp"],
        RegisterOptions(name="tmlp", inputs=[parse_tensor_arg("input:FP32:-1,64")]),
    )
    register_path(store, model_files["keras_mlp"], RegisterOptions(name="kmlp"))
    bundles = {}
    for key, name in (("torch", "tmlp"), ("keras", "kmlp")):
        r = export_bundle(store, name, ExportOptions(target="rpi", out=work / f"{name}-rpi"))
        assert r.converted and r.smoke is not None and r.smoke["ran"], r.smoke
        bundles[key] = r.directory
    return {"store": store.root, "bundles": bundles}
