"""The runner as a device runs it: from the bundle folder, with nothing of Truce installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.edge.conftest import BundleFactory, runner_cmd, runner_env

HEAVY = ("torch", "tensorflow", "keras", "fastapi", "grpc", "pydantic", "jax", "truce")


def _run(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        runner_cmd(*args), cwd=bundle, env=runner_env(), capture_output=True, text=True, timeout=120
    )


def _reference(tflite: Path, x: np.ndarray) -> np.ndarray:
    from edge.interpreter import TFLiteModel

    m = TFLiteModel(tflite)
    return next(iter(m.predict({m.inputs[0].name: x}).values()))


def test_import_is_light(make_bundle: BundleFactory) -> None:
    """Importing the runner and running a model loads no heavy framework."""
    d = make_bundle()
    code = (
        "import sys\n"
        "import edge.runner.cli, edge.runner.serve, edge.runner.bench, edge.runner.remote\n"
        "from edge.runner.model import BundleModel\n"
        "m = BundleModel('.'); m.predict(m.example_inputs())\n"
        f"print([k for k in sys.modules if k.split('.')[0] in {HEAVY!r}])\n"
        "print(edge.runner.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=d, env=runner_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded, where = done.stdout.strip().splitlines()
    assert loaded == "[]"
    assert Path(where).resolve().is_relative_to(d.resolve())  # the bundle's own copy ran


def test_run_npy(make_bundle: BundleFactory, tflite_mlp: Path, tmp_path: Path) -> None:
    d = make_bundle()
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    done = _run(
        d, "run", ".", "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")
    )
    assert done.returncode == 0, done.stderr
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(y, _reference(tflite_mlp, x), rtol=1e-6, atol=1e-6)
    # named input and .npz output
    name = json.loads((d / "bundle.json").read_text())["signature"]["inputs"][0]["name"]
    done = _run(
        d,
        "run",
        ".",
        "--input",
        f"{name}={tmp_path / 'x.npy'}",
        "--output",
        str(tmp_path / "y.npz"),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    out_name = next(iter(summary["outputs"]))
    assert summary["outputs"][out_name]["shape"] == [3, 10]
    with np.load(tmp_path / "y.npz") as z:
        np.testing.assert_array_equal(z[out_name], y)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 63), np.float32), "shape"),
        (np.zeros((1, 64), np.float64), "dtype"),
        (np.zeros((64,), np.float32), "shape"),
    ],
)
def test_run_bad_input(
    make_bundle: BundleFactory, tmp_path: Path, array: np.ndarray, message: str
) -> None:
    d = make_bundle()
    np.save(tmp_path / "x.npy", array)
    done = _run(d, "run", ".", "--input", str(tmp_path / "x.npy"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_run_refuses_pickles(make_bundle: BundleFactory, tmp_path: Path) -> None:
    d = make_bundle()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    done = _run(d, "run", ".", "--input", str(tmp_path / "obj.npy"))
    assert done.returncode == 2 and "cannot read obj.npy" in done.stderr
    done = _run(d, "run", ".")
    assert done.returncode == 2 and "--example" in done.stderr


def test_bench(make_bundle: BundleFactory) -> None:
    d = make_bundle()
    done = _run(d, "bench", ".", "--runs", "20", "--warmup", "2", "--threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    lat = r["latency_ms"]
    assert r["runs"] == 20 and r["threads"] == 1
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["load_ms"] > 0 and r["peak_rss_mib"] > 0
    text = _run(d, "bench", ".", "--runs", "5")
    assert text.returncode == 0 and "p99" in text.stdout and "peak RSS" in text.stdout


def test_torchscript_lite_bundle(make_bundle: BundleFactory, model_files: dict[str, Path]) -> None:
    """A lite TorchScript bundle runs with torch where installed."""
    pytest.importorskip("torch")
    from truce import zoo

    sig = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }
    d = make_bundle(
        "ptl", model=model_files["torchscript_lite_mlp"], fmt="torchscript_lite", signature=sig
    )
    assert "torch" in (d / "requirements.txt").read_text()
    from edge.runner.model import BundleModel

    m = BundleModel(d)
    x = zoo.mlp_input(2)
    import torch

    with torch.no_grad():
        want = zoo.TinyMLP()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.predict({"input": x})["output"], want, rtol=1e-5, atol=1e-5)
