"""What must never reach the store: broken conversions, crashed or hung converters, bad input.

Also the ``truce convert`` command line: table, ``--json``, exit codes, one-line errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.job import Converted
from converters.runner import InProcessRunner, SubprocessRunner
from converters.service import ConvertOptions, convert_model
from model_store.store import ModelStore
from truce.cli import main


def _files(store: ModelStore) -> list[str]:
    return sorted(
        str(p.relative_to(store.root))
        for p in store.root.rglob("*")
        if p.is_file() and p.name != ".lock"
    )


def perturb_onnx_weights(converted: Converted) -> None:
    """A deliberately broken conversion step: noise on the largest ONNX weight tensor."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(converted.artifact))
    tensor = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(tensor)
    noisy = weights + np.random.default_rng(0).normal(0, 0.05, weights.shape).astype(weights.dtype)
    tensor.CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    onnx.save(model, str(converted.artifact))


@pytest.mark.slow
def test_a_broken_conversion_fails_verification_and_registers_nothing(store: ModelStore) -> None:
    before = _files(store)
    runner = InProcessRunner(after_convert=perturb_onnx_weights)
    (outcome,) = convert_model(store, "mlp", "1", ConvertOptions(targets=["onnx"]), runner=runner)
    assert outcome.result.error is None and not outcome.result.passed
    assert outcome.status == "failed" and outcome.manifest is None
    parity = outcome.result.parity
    assert parity is not None and parity["verdict"] == "failed"
    assert any("values differ by more than atol" in r for r in parity["reasons"])
    assert _files(store) == before

    forced = ConvertOptions(targets=["onnx"], force=True)
    (outcome,) = convert_model(store, "mlp", "1", forced, runner=runner)
    m = outcome.manifest
    assert m is not None and outcome.status == "registered (parity failed)"
    assert m.labels["parity"] == "failed"
    assert m.lineage.parity is not None and m.lineage.parity["verdict"] == "failed"


class _Command(SubprocessRunner):
    def __init__(self, code: str, timeout_s: float = 60) -> None:
        super().__init__(timeout_s=timeout_s)
        self.code = code

    def command(self, job_file: Path, result_file: Path) -> list[str]:
        return [sys.executable, "-c", self.code]


@pytest.mark.parametrize(
    ("code", "timeout_s", "expected"),
    [
        ("import os; os.abort()", 60, "crashed (killed by SIGABRT); nothing was registered"),
        ("import sys; print('boom', file=sys.stderr); sys.exit(3)", 60, "exit code 3"),
        ("import time; print('step', flush=True); time.sleep(60)", 1, "timed out after 1 s"),
    ],
)
def test_crashed_or_hung_converter_gives_a_clear_error_and_leaves_the_store(
    store: ModelStore, code: str, timeout_s: float, expected: str
) -> None:
    before = _files(store)
    lines: list[str] = []
    runner = _Command(code, timeout_s)
    (outcome,) = convert_model(
        store, "mlp", "1", ConvertOptions(targets=["onnx"]), runner=runner, progress=lines.append
    )
    assert outcome.manifest is None and outcome.result.error is not None
    assert expected in outcome.result.error and "\n" not in outcome.result.error
    assert _files(store) == before
    if "sleep" in code:
        assert "[1/1] onnx: step" in lines  # progress relayed from the worker


# --- the command line --------------------------------------------------------------------
def _cli(store: ModelStore, *args: str) -> int:
    return main(["convert", *args, "--store", str(store.root)])


@pytest.mark.slow
def test_cli_failing_parity_registers_nothing_and_force_labels_it(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(store)
    strict = ("kcnn:1", "--to", "tflite", "--quantize", "fp16", "--atol", "0", "--rtol", "0")
    assert _cli(store, *strict) == 1
    out, err = capsys.readouterr()
    assert "parity failed" in out and "nothing registered" in out
    assert "values differ by more than atol 0 + rtol 0" in out
    assert "[1/1] tflite (fp16): converting to TFLite (fp16)" in err
    assert _files(store) == before

    assert _cli(store, *strict, "--force") == 0
    out, _ = capsys.readouterr()
    assert "registered, parity failed" in out
    assert store.manifest("kcnn", 2).labels["parity"] == "failed"


@pytest.mark.slow
def test_cli_json_output(store: ModelStore, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("kcnn@latest", "--to", "tflite", "--samples", "8", "--as", "kcnn-edge", "--json")
    assert _cli(store, *args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    (item,) = json.loads(out)
    assert item["status"] == "registered" and item["version"] == "kcnn-edge:1"
    assert item["result"]["parity"]["samples"] == 8
    m = store.manifest("kcnn-edge", 1)
    assert m.lineage.options["parent_model"] == "kcnn" and m.lineage.parent_version == 1
    assert store.versions("kcnn") == [1]


def test_cli_bad_input_is_one_actionable_line(
    store: ModelStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli(store, "mlp", "--to", "tensorrt")
    assert exc.value.code == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err

    cases = [
        (("kcnn", "--to", "torchscript"), 2, "a keras model cannot be converted to torchscript;"),
        (("nosuch", "--to", "onnx"), 3, "no model named 'nosuch'"),
        (("mlp:9", "--to", "onnx"), 3, "model 'mlp' has no version 9"),
        (("mlp", "--to", "onnx", "--quantize", "int8"), 2, "--quantize applies to --to tflite"),
        (("mlp", "--to", "onnx", "--samples", "0"), 2, "--samples and --calibration-samples"),
    ]
    for args, code, text in cases:
        assert _cli(store, *args) == code, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and err.count("\n") == 1, err

    import converters.targets

    monkeypatch.setattr(converters.targets, "_has_module", lambda name: name != "onnx2tf")
    assert _cli(store, "ocnn", "--to", "tflite") == 7
    err = capsys.readouterr().err
    assert "this needs onnx2tf, which is not installed: pip install 'truce[convert]'" in err
    assert store.versions("ocnn") == [1]
