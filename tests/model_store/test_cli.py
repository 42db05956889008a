"""``truce models ...`` as a user runs it: outputs, JSON contract, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from truce.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_register_list_show_alias_remove(
    tmp_path: Path, model_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    s = ["--store", str(tmp_path / "store")]
    code, out, _ = run(
        capsys, "models", "register", str(model_files["onnx_mlp"]), "--name", "mlp", *s
    )
    assert (code, out.strip()) == (0, "mlp:1")
    code, out, _ = run(
        capsys,
        "models",
        "register",
        str(model_files["torchscript_mlp"]),
        "--name",
        "mlp",
        "--input",
        "x:FP32:-1,64",
        "--max-batch-size",
        "8",
        "--label",
        "team=vision",
        "--json",
        *s,
    )
    manifest = json.loads(out)
    assert manifest["version"] == 2
    assert manifest["format"] == "torchscript"
    assert manifest["serving"]["batching"]["max_batch_size"] == 8
    assert manifest["labels"] == {"team": "vision"}

    run(capsys, "models", "register", str(model_files["keras_mlp"]), "--name", "kmlp", *s)
    code, out, _ = run(capsys, "models", "list", "--json", *s)
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows["mlp"]["versions"] == [1, 2] and rows["mlp"]["latest"] == 2
    assert rows["kmlp"]["framework"] == "tensorflow"

    code, out, _ = run(capsys, "models", "alias", "mlp", "stable", "1", *s)
    assert out.strip() == "mlp@stable -> 1"
    code, out, _ = run(capsys, "models", "show", "mlp@stable", "--json", *s)
    shown = json.loads(out)
    assert shown["version"] == 1
    assert shown["signature"]["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 64]}
    ]
    code, out, _ = run(capsys, "models", "show", "mlp", *s)
    assert code == 0 and "mlp:2  (pytorch / torchscript)" in out and "output__0" in out

    code, _, err = run(capsys, "models", "remove", "mlp:1", *s)
    assert code == 5 and "aliased as stable" in err
    run(capsys, "models", "alias", "mlp", "stable", "--delete", *s)
    code, _, _ = run(capsys, "models", "remove", "mlp:1", *s)
    assert code == 0
    code, out, _ = run(capsys, "models", "list", *s)
    assert "mlp" in out and "kmlp" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["models", "show", "nope"], 3, "no model named 'nope'"),
        (["models", "show", "../etc"], 2, "invalid model name"),
        (["models", "show", "m:0"], 2, "invalid version"),
        (["models", "alias", "m", "latest", "1"], 2, "reserved"),
        (["models", "register", "/nonexistent/model.onnx", "--name", "m"], 3, "no such file"),
        (["models", "register", "x.onnx", "--name", "a/b"], 2, "invalid model name"),
        (
            ["models", "register", "x.onnx", "--name", "m", "--input", "x:FP99:1"],
            2,
            "unknown datatype",
        ),
        (
            ["models", "register", "x.onnx", "--name", "m", "--input", "x:FP32"],
            2,
            "NAME:DTYPE:SHAPE",
        ),
        (["models", "register", "x.onnx", "--name", "m", "--device", "tpu"], 2, "device must be"),
    ],
)
def test_user_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    got, _, err = run(capsys, *argv, "--store", str(tmp_path / "s"))
    assert got == code
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").glob("*/[0-9]*"))


def test_pickle_refused_from_the_real_command(tmp_path: Path, model_files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "truce",
            "models",
            "register",
            str(model_files["pickled_mlp"]),
            "--name",
            "evil",
            "--store",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "pickle" in proc.stderr
    assert not (tmp_path / "s" / "evil").exists()


def test_parity_summary_in_show() -> None:
    from model_store.cli import _parity_lines

    lines = _parity_lines(
        {
            "verdict": "failed",
            "samples": 32,
            "source_format": "torch_export",
            "target_format": "tflite",
            "outputs": [{"name": "y", "max_abs_err": 0.5, "cosine": 0.9, "top1_agreement": 0.81}],
            "reasons": ["y: top-1 agreement 81% < 90%"],
        }
    )
    assert lines[0].strip() == "parity    FAILED on 32 inputs (torch_export -> tflite)"
    assert "max abs err 5.00e-01" in lines[1] and "top-1 81%" in lines[1]
    assert lines[2].strip() == "! y: top-1 agreement 81% < 90%"
