"""Registration of real models of every accepted format, built by the zoo fixtures."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model_store.register import RegisterOptions, register_path
from model_store.signature import TensorSpec, parse_tensor_arg
from model_store.store import ModelStore
from truce.errors import InvalidArgument

X64 = [parse_tensor_arg("x:FP32:-1,64")]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock")


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def _reg(store: ModelStore, path: Path, name: str = "m", **kw: object) -> object:
    return register_path(store, path, RegisterOptions(name=name, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "fmt", "framework", "in_shape", "out_shape"),
    [
        ("torch_export_mlp", "torch_export", "pytorch", [-1, 64], [-1, 10]),
        ("onnx_mlp", "onnx", "onnx", [-1, 64], [-1, 10]),
        ("keras_mlp", "keras", "tensorflow", [-1, 64], [-1, 10]),
        ("savedmodel_mlp", "savedmodel", "tensorflow", [-1, 64], [-1, 10]),
        ("tflite_mlp", "tflite", "tflite", [-1, 64], [-1, 10]),
        ("onnx_cnn", "onnx", "onnx", [-1, 3, 64, 64], [-1, 10]),
        ("keras_cnn", "keras", "tensorflow", [-1, 64, 64, 3], [-1, 10]),
    ],
)
def test_signature_is_inferred(
    store: ModelStore,
    model_files: dict[str, Path],
    key: str,
    fmt: str,
    framework: str,
    in_shape: list[int],
    out_shape: list[int],
) -> None:
    m = _reg(store, model_files[key])
    assert (m.format, m.framework, m.version) == (fmt, framework, 1)  # type: ignore[attr-defined]
    sig = store.verify("m", 1).signature
    assert [(t.datatype, t.shape) for t in sig.inputs] == [("FP32", in_shape)]
    assert [(t.datatype, t.shape) for t in sig.outputs] == [("FP32", out_shape)]
    assert m.source.filename == model_files[key].name  # type: ignore[attr-defined]


def test_torchscript_needs_inputs_then_derives_outputs(
    store: ModelStore, model_files: dict[str, Path]
) -> None:
    with pytest.raises(InvalidArgument, match="do not record their inputs: pass --input"):
        _reg(store, model_files["torchscript_mlp"])
    assert store.model_names() == []
    m = _reg(store, model_files["torchscript_mlp"], inputs=X64)
    assert m.signature.inputs == X64  # type: ignore[attr-defined]
    assert m.signature.outputs == [  # type: ignore[attr-defined]
        TensorSpec(name="output__0", datatype="FP32", shape=[-1, 10])
    ]


def test_torchscript_with_declared_outputs_and_sample(
    store: ModelStore, model_files: dict[str, Path]
) -> None:
    out = [parse_tensor_arg("logits:FP32:-1,10")]
    m = _reg(store, model_files["torchscript_mlp"], inputs=X64, outputs=out)
    assert m.signature.outputs == out  # type: ignore[attr-defined]
    sample = {"features": np.zeros((1, 64), np.float32)}
    m2 = _reg(store, model_files["torchscript_mlp"], samples=sample)
    assert m2.signature.inputs == [  # type: ignore[attr-defined]
        TensorSpec(name="features", datatype="FP32", shape=[-1, 64])
    ]
    with pytest.raises(InvalidArgument, match="declared FP16"):
        _reg(
            store,
            model_files["torchscript_mlp"],
            inputs=X64,
            outputs=[parse_tensor_arg("y:FP16:-1,10")],
        )


def test_wrong_input_shape_fails_the_test_inference(
    store: ModelStore, model_files: dict[str, Path]
) -> None:
    with pytest.raises(InvalidArgument, match=r"test inference .* failed"):
        _reg(store, model_files["torchscript_mlp"], inputs=[parse_tensor_arg("x:FP32:-1,63")])
    with pytest.raises(InvalidArgument, match="do not match the model's inputs"):
        _reg(store, model_files["onnx_mlp"], inputs=[parse_tensor_arg("nope:FP32:-1,64")])
    assert store.model_names() == []


def test_edge_formats_are_stored(store: ModelStore, model_files: dict[str, Path]) -> None:
    pte = _reg(
        store, model_files["executorch_mlp"], "pte", inputs=[parse_tensor_arg("x:FP32:1,64")]
    )
    assert (pte.format, pte.framework) == ("executorch", "pytorch")  # type: ignore[attr-defined]
    assert not pte.servable  # type: ignore[attr-defined]
    ptl = _reg(store, model_files["torchscript_lite_mlp"], "ptl", inputs=X64)
    assert ptl.format == "torchscript_lite"  # type: ignore[attr-defined]


def test_mar_import(store: ModelStore, model_files: dict[str, Path]) -> None:
    m = _reg(store, model_files["mar_mlp"], inputs=X64)
    assert m.format == "torchscript"  # type: ignore[attr-defined]
    assert m.labels["torchserve.model_name"] == "mlp"  # type: ignore[attr-defined]
    assert m.source.filename == "mlp.mar"  # type: ignore[attr-defined]
    assert [f.path for f in m.files] == ["model.pt"]  # type: ignore[attr-defined]


def test_pickles_are_refused(
    store: ModelStore, model_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match=r"pickled PyTorch object.*torch\.jit\.save"):
        _reg(store, model_files["pickled_mlp"])
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(InvalidArgument, match="pickle"):
        _reg(store, legacy)
    h5 = tmp_path / "m.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(InvalidArgument, match="HDF5"):
        _reg(store, h5)
    assert not store.root.exists() or _files(store.root) == []


def test_eager_mar_is_refused(
    store: ModelStore, model_files: dict[str, Path], tmp_path: Path
) -> None:
    mar = tmp_path / "eager.mar"
    with zipfile.ZipFile(mar, "w") as zf:
        manifest = {"model": {"modelName": "e", "serializedFile": "weights.pt"}}
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        zf.write(model_files["pickled_mlp"], "weights.pt")
        zf.writestr("model.py", "import os")
    with pytest.raises(InvalidArgument, match="not TorchScript"):
        _reg(store, mar, inputs=X64)
    evil = tmp_path / "evil.mar"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", "{}")
        zf.writestr("../../outside.pt", "x")
    with pytest.raises(InvalidArgument, match="unsafe archive"):
        _reg(store, evil)
    assert not (tmp_path.parent / "outside.pt").exists()
    assert not store.root.exists() or _files(store.root) == []


def test_corrupt_and_mismatched_files(
    store: ModelStore, model_files: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(model_files["onnx_mlp"].read_bytes()[:200])
    with pytest.raises(InvalidArgument):
        _reg(store, broken)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(model_files["tflite_mlp"].read_bytes()[:300])
    with pytest.raises(InvalidArgument):
        _reg(store, cut)
    with pytest.raises(InvalidArgument, match="does not match the file"):
        _reg(store, model_files["onnx_mlp"], format="tflite")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(InvalidArgument, match="cannot tell the format"):
        _reg(store, empty)
    assert store.model_names() == []


def test_onnx_external_data_must_stay_inside(store: ModelStore, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [4, 2], np.ones(8, np.float32).tobytes(), raw=True
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    onnx.save_model(
        model,
        str(good_dir / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    m = _reg(store, good_dir / "m.onnx", "ext")
    assert sorted(f.path for f in m.files) == ["model.onnx", "weights.bin"]  # type: ignore[attr-defined]
    # the same model pointing outside its folder
    evil = onnx.load_model(str(good_dir / "m.onnx"), load_external_data=False)
    for t in evil.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    onnx.save_model(evil, str(evil_dir / "m.onnx"))
    with pytest.raises(InvalidArgument, match="outside the model's folder"):
        _reg(store, evil_dir / "m.onnx", "evil")
    assert store.model_names() == ["ext"]
