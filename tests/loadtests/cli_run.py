"""Run ``truce loadtest`` as a user does: a child process, a report folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LoadtestRun:
    code: int
    stdout: str
    stderr: str
    report: Path

    @property
    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.report / "summary.json").read_text())
        return data


def run_loadtest(report: Path, *args: str, timeout: float = 120) -> LoadtestRun:
    """``truce loadtest ... --report REPORT`` in a child process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "truce", "loadtest", *args, "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    return LoadtestRun(done.returncode, done.stdout, done.stderr, report)
