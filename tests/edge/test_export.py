"""``truce edge export``: choosing the version, conversion, bundle contents, CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.export import ExportOptions, export_bundle
from edge.runner.model import BundleModel
from edge.runner.verify import verify_bundle
from model_store.manifest import Lineage
from model_store.store import ModelStore
from truce.cli import main as truce


def test_export_tflite_version(tflite_store: Path, tmp_path: Path) -> None:
    store = ModelStore(tflite_store)
    r = export_bundle(store, "mlp:1", ExportOptions(target="rpi", out=tmp_path / "b.tar.gz"))
    assert r.directory == tmp_path / "b" and r.archive == tmp_path / "b.tar.gz"
    assert (
        not r.converted
        and r.model.version == 1
        and r.smoke == {"ran": True, "outputs": {"output_0": [1, 10]}}
    )
    meta = verify_bundle(r.directory)
    manifest = store.manifest("mlp", 1)
    assert meta["signature"] == manifest.signature.model_dump(mode="json")
    assert meta["source"]["name"] == "mlp" and meta["source"]["version"] == 1
    assert meta["parity"] is None and meta["target"] == "rpi"
    assert (r.directory / "model/model.tflite").read_bytes() == (
        store.version_dir("mlp", 1) / manifest.artifact
    ).read_bytes()
    assert "edge.runner run" in (r.directory / "README.md").read_text()


def test_export_picks_converted_child(tflite_store: Path, tmp_path: Path, tflite_mlp: Path) -> None:
    """With a source in another format, a version converted *from it* is used, if it passed."""
    store = ModelStore(tflite_store)
    m = store.manifest("mlp", 1)
    art = store.version_dir("mlp", 1) / m.artifact
    parity = {"verdict": "passed", "max_abs_error": 1e-7}
    # stand-ins for "a torch_export source and its conversions": v2 is the source, v3 a
    # failed conversion, v4 an int8 one, v5 the right one
    store.add_version("mlp", art, format="tflite", signature=m.signature)
    for quant, label in (("none", "failed"), ("int8", "passed"), ("none", "passed")):
        store.add_version(
            "mlp",
            art,
            format="tflite",
            signature=m.signature,
            lineage=Lineage(parent_version=2, tool="t", options={"quantize": quant}, parity=parity),
            labels={"parity": label},
        )
    from edge.export import find_existing

    src = store.manifest("mlp", 2).model_copy(update={"format": "torch_export"})
    assert find_existing(store, src, "tflite", "none").version == 5  # type: ignore[union-attr]
    assert find_existing(store, src, "tflite", "int8").version == 4  # type: ignore[union-attr]
    assert find_existing(store, src, "tflite", "fp16") is None
    # the version itself when it already is tflite
    r = export_bundle(store, "mlp:3", ExportOptions(target="rpi", out=tmp_path / "x"))
    assert r.model.version == 3 and not r.converted


@pytest.mark.parametrize(
    ("target", "needle"),
    [("android", "org.tensorflow.lite.Interpreter"), ("ios", "import TensorFlowLite")],
)
def test_mobile_readme(tflite_store: Path, tmp_path: Path, target: str, needle: str) -> None:
    r = export_bundle(
        ModelStore(tflite_store),
        "mlp",
        ExportOptions(target=target, out=tmp_path / target, mean=[0.5], std=[0.25]),
    )
    text = (r.directory / "README.md").read_text()
    assert needle in text and "could not be compiled or run" in text
    assert "FP32 [N, 64]" in text  # the input described from the signature
    assert json.loads((r.directory / "bundle.json").read_text())["preprocessing"] == {
        "mean": [0.5],
        "std": [0.25],
    }


def test_cli_export_signed(
    tflite_store: Path,
    tmp_path: Path,
    signing_key: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, pub = signing_key
    out = tmp_path / "signed"
    code = truce(
        [
            "edge",
            "export",
            "mlp@latest",
            "--target",
            "linux-arm64",
            "--out",
            str(out),
            "--sign-key",
            str(key),
            "--store",
            str(tflite_store),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["signed"] and report["model"] == "mlp:1" and not report["converted"]
    assert truce(["edge", "verify", str(out) + ".tar.gz", "--trusted-key", str(pub)]) == 0
    assert "signed by" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (
            ["mlp", "--target", "rpi", "--quantize", "int8", "--format", "torchscript_lite"],
            2,
            "--quantize applies to --format tflite only",
        ),
        (["nope", "--target", "rpi"], 3, "no model named 'nope'"),
        (["mlp:9", "--target", "rpi"], 3, "no version 9"),
        (["../x", "--target", "rpi"], 2, "invalid model name"),
        (["mlp", "--target", "rpi", "--mean", "0.5"], 2, "--mean and --std together"),
    ],
)
def test_cli_export_errors(
    tflite_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    needle: str,
) -> None:
    got = truce(
        ["edge", "export", *args, "--out", str(tmp_path / "o"), "--store", str(tflite_store)]
    )
    err = capsys.readouterr().err
    assert got == code and needle in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_existing_out_refused(
    tflite_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "edge",
        "export",
        "mlp",
        "--target",
        "rpi",
        "--out",
        str(tmp_path / "o"),
        "--store",
        str(tflite_store),
    ]
    assert truce(args) == 0
    capsys.readouterr()
    assert truce(args) == 4 and "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_exported_from_both_frameworks(pi_exports: dict[str, Any]) -> None:
    """PyTorch and Keras sources, converted with a passing parity report, bundled."""
    from gateway.runtimes import RuntimeSpec, open_runtime

    store = ModelStore(pi_exports["store"])
    for key, name in (("torch", "tmlp"), ("keras", "kmlp")):
        d = pi_exports["bundles"][key]
        meta = verify_bundle(d)
        assert meta["source"]["name"] == name and meta["source"]["version"] == 1
        assert meta["source"]["framework"] == ("pytorch" if key == "torch" else "tensorflow")
        assert meta["model"]["format"] == "tflite" and meta["model"]["version"] == 2
        assert meta["parity"]["verdict"] == "passed"
        assert meta["lineage"]["parent_version"] == 1
        src = store.manifest(name, 1)
        x = np.random.default_rng(5).standard_normal((3, 64)).astype(np.float32)
        feeds = {src.signature.inputs[0].name: x}
        rt = open_runtime(
            RuntimeSpec(
                artifact=store.version_dir(name, 1) / src.artifact,
                format=src.format,
                signature=src.signature,
            )
        )
        rt.load_blocking()
        want = next(iter(rt.predict_blocking(feeds).values()))
        rt.unload_blocking()
        got = next(iter(BundleModel(d).predict(feeds).values()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # exporting again reuses the converted version instead of converting again
    again = export_bundle(
        store, "kmlp:1", ExportOptions(target="rpi", out=Path(d).parent / "again")
    )
    assert not again.converted and again.model.version == 2
    shutil.rmtree(again.directory)
