"""``make demo`` is one of the README's two commands: run it for real, in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_make_demo_registers_converts_and_serves(tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TRUCE_STORE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "truce.demo"],
        cwd=tmp_path,  # the demo writes ./demo, with a relative store path as a user would
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # both conversions passed their parity check and were registered
    assert "onnx    mlp:3" in out and "tflite  mlp:4" in out
    assert out.count("registered") >= 2
    # every API answered through the running gateway, and bad input got a 400
    for expected in (
        "model_version 1",
        "mlp:latest (TFLite)",
        "resnet output: shape (2, 10)",
        "predictions: [",
        "{'status': 'Healthy'}",
        "HTTP 400",
        "mlp:4  READY",
        "exit code 0",
    ):
        assert expected in out, expected
    assert (tmp_path / "demo" / "store" / "mlp" / "4" / "manifest.json").is_file()
