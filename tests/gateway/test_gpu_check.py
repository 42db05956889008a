"""``make gpu-check`` runs its CPU path here (no GPU on CI): the same code, device=cpu."""

from __future__ import annotations

import pytest

from gateway import gpu_check


def test_gpu_check_cpu_path(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorflow")
    assert gpu_check.main(["--device", "cpu", "--seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    for key in gpu_check.CASES:
        assert key in out
    assert "FAILED" not in out and "MISMATCH" not in out
