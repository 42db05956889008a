"""truce.zoo: cheap to import, deterministic, and every artifact is what it claims to be."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from truce import zoo

REPO = Path(__file__).resolve().parents[1]


def test_import_is_cheap() -> None:
    code = (
        "import sys, truce.zoo; heavy = ('torch', 'tensorflow', 'keras', 'executorch'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_torch_models_are_seeded() -> None:
    torch = pytest.importorskip("torch")
    for build, x in ((zoo.TinyMLP, zoo.mlp_input(2)), (zoo.TinyResNet, zoo.cnn_input(2))):
        a, b, c = build(0), build(0), build(1)
        with torch.inference_mode():
            ya, yb, yc = (m(torch.from_numpy(x)).numpy() for m in (a, b, c))
        assert ya.shape == (2, 10)
        np.testing.assert_array_equal(ya, yb)
        assert not np.allclose(ya, yc)
        assert not a.training


def test_keras_models_are_seeded() -> None:
    pytest.importorskip("keras")
    for build, x in (
        (zoo.keras_mlp, zoo.mlp_input(2)),
        (zoo.keras_cnn, zoo.cnn_input(2, channels_last=True)),
    ):
        ya, yb, yc = (np.asarray(build(s)(x)) for s in (0, 0, 1))
        assert ya.shape == (2, 10)
        np.testing.assert_array_equal(ya, yb)
        assert not np.allclose(ya, yc)


def test_artifacts(model_files: dict[str, Path]) -> None:
    assert set(model_files) == set(zoo.ALL_KEYS)
    with zipfile.ZipFile(model_files["mar_mlp"]) as mar:
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["modelName"] == "mlp"
        serialized = manifest["model"]["serializedFile"]
        assert mar.read(serialized) == model_files["torchscript_mlp"].read_bytes()
    assert (model_files["savedmodel_mlp"] / "saved_model.pb").is_file()
    assert b"XnnpackBackend" in model_files["executorch_mlp"].read_bytes()
    assert model_files["tflite_mlp"].read_bytes()[4:8] == b"TFL3"
    # a pickle, not TorchScript: torch.save of the eager module
    with zipfile.ZipFile(model_files["pickled_mlp"]) as z:
        assert not any(n.endswith("constants.pkl") for n in z.namelist())


def test_cli_usage() -> None:
    assert zoo.main([]) == 2
