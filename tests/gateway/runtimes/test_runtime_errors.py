"""Bad artifacts, bad devices and bad inputs: one-line TruceErrors, never server paths."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.runtimes import RuntimeSpec, open_runtime
from gateway.runtimes.common import first_line, parse_device
from model_store.signature import Signature, TensorSpec
from truce.errors import FailedPrecondition, InvalidArgument

SERVED = {
    "torchscript": ("torchscript_mlp", "torch"),
    "torch_export": ("torch_export_mlp", "torch"),
    "onnx": ("onnx_mlp", "onnxruntime"),
    "keras": ("keras_mlp", "keras"),
    "savedmodel": ("savedmodel_mlp", "tensorflow"),
    "tflite": ("tflite_mlp", "ai_edge_litert"),
}
SUFFIX = {"torchscript": ".pt", "torch_export": ".pt2", "onnx": ".onnx", "keras": ".keras"}


def _load(fmt: str, artifact: Path, **kw: Any) -> Any:
    pytest.importorskip(SERVED[fmt][1])
    rt = open_runtime(RuntimeSpec(artifact=artifact, format=fmt, **kw))
    rt.load_blocking()
    return rt


def _no_path(err: pytest.ExceptionInfo[Exception], path: Path) -> None:
    text = str(err.value)
    assert str(path.parent) not in text and "/tmp" not in text, text
    assert "\n" not in text


@pytest.mark.parametrize("fmt", sorted(SERVED))
def test_garbage_artifact_is_invalid(fmt: str, tmp_path: Path) -> None:
    if fmt == "savedmodel":
        bad = tmp_path / "sm"
        bad.mkdir()
        (bad / "saved_model.pb").write_bytes(b"\x00garbage" * 50)
    else:
        bad = tmp_path / f"model{SUFFIX.get(fmt, '.tflite')}"
        bad.write_bytes(b"PK\x03\x04 not really a model" * 20)
    with pytest.raises(InvalidArgument) as err:
        _load(fmt, bad)
    _no_path(err, bad)


def test_pickled_module_is_refused(model_files: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument, match="pickled modules are not accepted") as err:
        _load("torchscript", model_files["pickled_mlp"])
    _no_path(err, model_files["pickled_mlp"])


def test_pt2_with_pickle_payload_never_runs_it(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """torch.export.load unpickles 'use_pickle' weights; the runtime must refuse them."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> Any:
            return (os.mkdir, (str(marker),))

    buf = io.BytesIO()
    torch.save(Payload(), buf)
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(model_files["torch_export_mlp"]) as zin:
        entries = {info.filename: zin.read(info) for info in zin.infolist()}
    config_name = next(n for n in entries if n.endswith("weights/model_weights_config.json"))
    config = json.loads(entries[config_name])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True  # torch.export.load would torch.load(weights_only=False) it
    entries[config_name] = json.dumps(config).encode()
    entries[config_name.replace("model_weights_config.json", first["path_name"])] = buf.getvalue()
    with zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as zout:
        for name, data in entries.items():
            zout.writestr(name, data)

    with pytest.raises(InvalidArgument, match="pickled Python objects"):
        _load("torch_export", evil)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_onnx_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper

    raw = np.arange(4, dtype=np.float32).tobytes()
    weight = helper.make_tensor("w", onnx.TensorProto.FLOAT, [4], raw, raw=True)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "secret").write_bytes(raw)
    inner = tmp_path / "model"
    inner.mkdir()
    onnx.external_data_helper.set_external_data(model.graph.initializer[0], "../secret")
    model.graph.initializer[0].data_location = onnx.TensorProto.EXTERNAL
    model.graph.initializer[0].ClearField("raw_data")
    onnx.save(model, str(inner / "m.onnx"))
    with pytest.raises(InvalidArgument, match="outside the model folder"):
        _load("onnx", inner / "m.onnx")


def test_keras_h5_is_refused(model_files: dict[str, Path], tmp_path: Path) -> None:
    h5 = tmp_path / "model.h5"
    shutil.copy(model_files["keras_mlp"], h5)
    with pytest.raises(InvalidArgument, match=r"legacy \.h5"):
        _load("keras", h5)


def test_savedmodel_signature_choice(model_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"no signature 'nope'.*serving_default"):
        _load("savedmodel", model_files["savedmodel_mlp"], options={"signature_name": "nope"})
    with pytest.raises(InvalidArgument, match="not a SavedModel folder"):
        _load("savedmodel", tmp_path)


@pytest.mark.parametrize("fmt", sorted(SERVED))
def test_bad_inputs_are_invalid_argument(fmt: str, model_files: dict[str, Path]) -> None:
    """The gateway validates first; a runtime still never lets a framework error escape."""
    rt = _load(fmt, model_files[SERVED[fmt][0]])
    name = (
        rt.declared_signature().inputs or [TensorSpec(name="input", datatype="FP32", shape=[])]
    )[0].name
    for bad in (np.zeros((2, 63), np.float32), np.zeros((2, 64), np.float64)):
        with pytest.raises(InvalidArgument):
            rt.predict_blocking({name: bad})
    out = rt.predict_blocking({name: np.zeros((2, 64), np.float32)})  # still works
    assert next(iter(out.values())).shape == (2, 10)


@pytest.mark.parametrize("fmt", ["onnx", "keras", "savedmodel", "tflite"])
def test_renamed_inputs_match_by_position(fmt: str, model_files: dict[str, Path]) -> None:
    """A manifest may name tensors differently from the artifact: matched in order."""
    sig = Signature(
        inputs=[TensorSpec(name="features", datatype="FP32", shape=[-1, 64])],
        outputs=[TensorSpec(name="scores", datatype="FP32", shape=[-1, 10])],
    )
    rt = _load(fmt, model_files[SERVED[fmt][0]], signature=sig)
    out = rt.predict_blocking({"features": np.ones((3, 64), np.float32)})
    assert list(out) == ["scores"] and out["scores"].shape == (3, 10)


def test_edge_formats_are_not_served() -> None:
    for fmt in ("executorch", "torchscript_lite"):
        with pytest.raises(FailedPrecondition, match="edge devices"):
            open_runtime(RuntimeSpec(artifact=Path("x"), format=fmt))


def test_device_names() -> None:
    assert str(parse_device("cpu")) == "cpu"
    assert str(parse_device("cuda")) == "cuda:0"
    assert str(parse_device("CUDA:2")) == "cuda:2"
    for bad in ("gpu", "cuda:", "cuda:-1", "cuda:x", "tpu:0", ""):
        with pytest.raises(InvalidArgument, match="cpu, cuda or cuda:N"):
            parse_device(bad)


def test_first_line_hides_paths() -> None:
    err = RuntimeError("open failed: /srv/store/m/1/model.pt: no such file\ntraceback...")
    assert first_line(err) == "open failed: <path>: no such file"
