"""Real conversions of the zoo models: every target, verified, registered, served back.

Each conversion runs in its own worker process, as ``truce convert`` runs it. The converted
version is then loaded from the store with the gateway's runtime table and compared with the
source version on fresh inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.service import ConvertOptions, Outcome, convert_model
from converters.targets import targets_from
from model_store.manifest import Manifest
from model_store.signature import example_inputs
from model_store.store import ModelStore

pytestmark = pytest.mark.slow


def _check(
    store: ModelStore, outcomes: list[Outcome], name: str, atol: float, serve: Any
) -> list[Manifest]:
    """Every outcome registered with a passing report, and serves what the source serves."""
    source = store.manifest(name, 1)
    manifests = []
    for o in outcomes:
        assert o.result.error is None, f"{o.label}: {o.result.error}"
        assert o.result.passed, f"{o.label}: {o.result.parity}"
        m = o.manifest
        assert m is not None and m.name == name and m.version > 1
        assert m.labels == {"parity": "passed", "converted_from": f"{name}:1"}
        assert m.lineage.parent_version == 1 and m.lineage.tool and m.lineage.tool_version
        assert m.lineage.options["target"] == o.result.target
        parity = m.lineage.parity
        assert parity is not None and parity["verdict"] == "passed"
        if parity["inputs"]["source"] == "generated":
            assert parity["samples"] == 32 and parity["inputs"]["seed"] == 0
        assert [t.name for t in m.signature.inputs] == [t.name for t in source.signature.inputs]
        dynamic = m.signature.inputs[0].shape[0] == -1
        x = example_inputs(m.signature.inputs, batch=3 if dynamic else 1, seed=99)
        np.testing.assert_allclose(
            serve(store, m, x), serve(store, source, x), atol=atol, err_msg=o.label
        )
        manifests.append(m)
    return manifests


def test_torch_mlp_to_every_target(store: ModelStore, serve: Any) -> None:
    targets = targets_from("torchscript")
    assert set(targets) == {"torchscript_lite", "torch_export", "onnx", "tflite", "executorch"}
    lines: list[str] = []
    outcomes = convert_model(
        store, "mlp", "1", ConvertOptions(targets=targets), progress=lines.append
    )
    manifests = _check(store, outcomes, "mlp", atol=1e-5, serve=serve)
    assert [m.format for m in manifests] == targets
    assert store.versions("mlp") == [1, 2, 3, 4, 5, 6]
    by_format = {m.format: m for m in manifests}
    assert by_format["executorch"].lineage.options["delegate"] == "xnnpack"
    assert by_format["tflite"].lineage.options["route"]  # which tool, recorded
    assert any("[5/5] executorch: lowering to ExecuTorch" in line for line in lines)


def test_torch_cnn_to_every_target(store: ModelStore, serve: Any) -> None:
    targets = targets_from("torch_export")
    assert set(targets) == {"torchscript", "torchscript_lite", "onnx", "tflite", "executorch"}
    opts = ConvertOptions(targets=targets, quantize=["none", "fp16"])
    outcomes = convert_model(store, "cnn", "1", opts)
    manifests = _check(store, outcomes, "cnn", atol=1e-3, serve=serve)
    tflite = [m for m in manifests if m.format == "tflite"]
    assert [m.lineage.options["quantize"] for m in tflite] == ["none", "fp16"]
    assert "channels-first" in tflite[0].lineage.options["layout"]
    assert tflite[0].signature.inputs[0].shape == [-1, 3, 64, 64]  # layout as registered
    assert tflite[1].lineage.parity is not None
    assert tflite[1].lineage.parity["tolerance"]["rtol"] == 1e-2


def test_keras_cnn_to_every_target_and_quantization(store: ModelStore, serve: Any) -> None:
    targets = targets_from("keras")
    opts = ConvertOptions(targets=targets, quantize=["none", "dynamic", "fp16", "int8"])
    outcomes = convert_model(store, "kcnn", "1", opts)
    assert [o.label for o in outcomes] == [
        "onnx",
        "tflite",
        "tflite (dynamic)",
        "tflite (fp16)",
        "tflite (int8)",
        "savedmodel",
    ]
    manifests = _check(store, outcomes, "kcnn", atol=2e-2, serve=serve)
    int8 = manifests[4]
    assert int8.lineage.options["calibration"]["source"] == "generated"
    assert int8.lineage.options["calibration"]["count"] == 64
    parity = int8.lineage.parity
    assert parity is not None and parity["tolerance"]["min_cosine"] == 0.99
    assert outcomes[4].result.size_bytes < outcomes[1].result.size_bytes / 2


def test_int8_with_a_calibration_set_and_user_inputs(
    store: ModelStore, tmp_path: Path, serve: Any
) -> None:
    calib, inputs = tmp_path / "calib", tmp_path / "inputs"
    calib.mkdir()
    inputs.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        np.save(calib / f"c{i}.npy", rng.standard_normal((16, 64)).astype(np.float32))
    np.save(inputs / "x.npy", rng.standard_normal((20, 64)).astype(np.float32))
    opts = ConvertOptions(
        targets=["tflite"], quantize=["int8"], calibration_dir=calib, inputs_dir=inputs
    )
    (outcome,) = convert_model(store, "mlp", "1", opts)
    (m,) = _check(store, [outcome], "mlp", atol=0.05, serve=serve)
    options = m.lineage.options
    assert options["calibration"]["source"] == "files"
    assert sorted(options["calibration"]["sha256"]) == ["c0.npy", "c1.npy", "c2.npy"]
    assert options["calibration"]["count"] == 48
    assert options["route"].startswith("onnx2tf")
    parity = m.lineage.parity
    assert parity is not None and parity["inputs"]["source"] == "files"
    assert parity["samples"] == 20 and list(parity["inputs"]["sha256"]) == ["x.npy"]


def test_onnx_to_tflite_keeps_nchw_and_to_torchscript(store: ModelStore, serve: Any) -> None:
    outcomes = convert_model(store, "ocnn", "1", ConvertOptions(targets=["tflite", "torchscript"]))
    tflite, torchscript = _check(store, outcomes, "ocnn", atol=1e-4, serve=serve)
    assert tflite.signature.inputs[0].shape == [-1, 3, 64, 64]
    assert "onnx2tf transposes" in tflite.lineage.options["layout"]
    assert torchscript.lineage.tool == "onnx2torch"


def test_unsupported_onnx_graph_gets_a_clear_error(store: ModelStore, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from model_store.register import RegisterOptions, register_path
    from truce import zoo

    path = zoo.write_onnx(
        zoo.TinyResNet(), torch.randn(2, 3, 64, 64), tmp_path / "dyn.onnx", dynamo=True
    )
    register_path(store, path, RegisterOptions(name="dyn"))
    (outcome,) = convert_model(store, "dyn", None, ConvertOptions(targets=["torchscript"]))
    assert outcome.manifest is None and outcome.status == "error"
    assert outcome.result.error is not None
    assert "onnx2torch cannot convert this graph: ReduceMean (opset 18)" in outcome.result.error
    assert "\n" not in outcome.result.error
    assert store.versions("dyn") == [1]
