"""edge/interpreter.py: loader fallback, SignatureDef and tensor modes, dynamic batch."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.interpreter import (
    BadInput,
    BadModel,
    InterpreterUnavailable,
    TFLiteModel,
    interpreter_class,
)
from truce import zoo

pytest.importorskip("ai_edge_litert")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keras_mlp() -> object:
    pytest.importorskip("keras")
    return zoo.keras_mlp()


@pytest.fixture(scope="module")
def unsigned_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model without SignatureDefs (deprecated converter path): y = 2 * relu(x), x [-1, 4]."""
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def f(x: object) -> object:
        return tf.nn.relu(x) * 2.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    path = tmp_path_factory.mktemp("tflite") / "unsigned.tflite"
    path.write_bytes(converter.convert())
    return path


def test_signature_model_dynamic_batch(model_files: dict[str, Path], keras_mlp: object) -> None:
    model = TFLiteModel(model_files["tflite_mlp"])
    assert model.signature_key == "serving_default"
    assert [(t.name, t.shape, t.dtype) for t in model.inputs] == [("x", (-1, 64), np.float32)]
    assert [(t.name, t.shape) for t in model.outputs] == [("output_0", (-1, 10))]
    for batch in (1, 4, 4, 1):
        x = zoo.mlp_input(batch, seed=batch)
        out = model.predict({"x": x})
        np.testing.assert_allclose(out["output_0"], keras_mlp(x), rtol=1e-5, atol=1e-4)  # type: ignore[operator]


def test_tensor_mode_resizes_on_a_new_batch(unsigned_tflite: Path) -> None:
    model = TFLiteModel(model_content=unsigned_tflite.read_bytes())
    assert model.signature_key is None
    (inp,) = model.inputs
    assert inp.shape == (-1, 4)
    for batch in (1, 3, 3, 5, 1):
        x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        (y,) = model.predict({inp.name: x}).values()
        np.testing.assert_allclose(y, 2 * np.maximum(x, 0), rtol=1e-6)


def test_bad_inputs(model_files: dict[str, Path]) -> None:
    model = TFLiteModel(model_files["tflite_mlp"])
    cases = {
        "missing input 'x'": {},
        "unexpected input 'y'": {"x": np.zeros((1, 64), np.float32), "y": np.zeros(1)},
        "dtype float64": {"x": np.zeros((1, 64))},
        r"shape \[1, 63\]": {"x": np.zeros((1, 63), np.float32)},
        r"shape \[64\]": {"x": np.zeros(64, np.float32)},
    }
    for message, inputs in cases.items():
        with pytest.raises(BadInput, match=message):
            model.predict(inputs)
    assert model.predict({"x": np.zeros((2, 64), np.float32)})["output_0"].shape == (2, 10)


def test_bad_model_and_signature(model_files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 64)
    with pytest.raises(BadModel, match="not a TFLite model"):
        TFLiteModel(bad)
    with pytest.raises(BadModel, match="no signature 'other'; it has serving_default"):
        TFLiteModel(model_files["tflite_mlp"], signature_key="other")
    with pytest.raises(ValueError, match="exactly one"):
        TFLiteModel()


def test_interpreter_fallback_order(model_files: dict[str, Path]) -> None:
    with pytest.raises(InterpreterUnavailable, match="pip install ai-edge-litert"):
        interpreter_class(("truce_absent_a.interpreter", "truce_absent_b.interpreter"))
    cls = interpreter_class(("truce_absent.interpreter", "ai_edge_litert.interpreter"))
    assert cls.__module__ == "ai_edge_litert.interpreter"
    model = TFLiteModel(
        model_files["tflite_mlp"],
        modules=("truce_absent.interpreter", "ai_edge_litert.interpreter"),
    )
    assert model.predict({"x": zoo.mlp_input(1)})["output_0"].shape == (1, 10)


def test_concurrent_callers_get_their_own_rows(model_files: dict[str, Path]) -> None:
    """One interpreter is not thread-safe; the model's lock makes sharing it correct."""
    model = TFLiteModel(model_files["tflite_mlp"])
    inputs = {b: zoo.mlp_input(b, seed=b) for b in (1, 2, 3, 5)}
    expected = {b: model.predict({"x": x})["output_0"] for b, x in inputs.items()}
    errors: list[str] = []

    def worker(batch: int) -> None:
        for _ in range(25):
            got = model.predict({"x": inputs[batch]})["output_0"]
            if not np.array_equal(got, expected[batch]):
                errors.append(f"batch {batch} got other rows")

    threads = [threading.Thread(target=worker, args=(b,)) for b in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


def test_edge_imports_only_numpy_and_litert(model_files: dict[str, Path]) -> None:
    code = (
        "import sys; from edge.interpreter import TFLiteModel; "
        f"m = TFLiteModel({str(model_files['tflite_mlp'])!r}); "
        "import numpy as np; m.predict({'x': np.zeros((1, 64), np.float32)}); "
        "heavy = ('torch', 'tensorflow', 'keras', 'onnxruntime', 'truce', 'gateway', "
        "'model_store', 'pydantic'); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
