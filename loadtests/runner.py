"""Run locust headless in its own process and show progress while it runs.

Locust is never imported here: its gevent monkey-patching must happen before ssl, gRPC or
TensorFlow are imported, which the CLI process cannot promise (TOOLCHAIN.md). The child
writes its results file once a second; this process reads it for the progress line and, at
the end, for the summary.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from loadtests.prepared import USER_CLASSES
from loadtests.recorder import LatencyRecorder
from truce.errors import Unavailable

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: extra seconds beyond the planned run before the child is stopped by force
GRACE_S = 60.0


@dataclass(frozen=True)
class LocustRun:
    host: str
    protocol: str
    users: int
    spawn_rate: float
    duration_s: float
    request_dir: Path
    report_dir: Path
    request_timeout_s: float = 30.0

    @property
    def results_path(self) -> Path:
        return self.report_dir / "results.json"

    def command(self) -> list[str]:
        report = self.report_dir
        return [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            self.host,
            "--users",
            str(self.users),
            "--spawn-rate",
            f"{self.spawn_rate:g}",
            "--run-time",
            f"{max(1, math.ceil(self.duration_s))}s",
            "--stop-timeout",
            f"{min(self.request_timeout_s, 10.0):g}",
            "--csv",
            str(report / "locust"),
            "--html",
            str(report / "locust.html"),
            "--only-summary",
            "--exit-code-on-error",
            "0",
            "--logfile",
            str(report / "locust.log"),
            USER_CLASSES[self.protocol],
        ]

    def environment(self) -> dict[str, str]:
        root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH", "")
        return {
            **os.environ,
            "PYTHONPATH": root + (os.pathsep + path if path else ""),
            "TRUCE_LOADTEST_REQUEST": str(self.request_dir),
            "TRUCE_LOADTEST_RESULTS": str(self.results_path),
            "TRUCE_LOADTEST_TIMEOUT": f"{self.request_timeout_s:g}",
        }


def _progress_line(run: LocustRun, rec: LatencyRecorder, last: tuple[float, int]) -> str:
    elapsed, total = rec.duration_s, rec.total
    window = elapsed - last[0]
    rate = (total - last[1]) / window if window > 0 else 0.0
    p99 = rec.percentile(99) if rec.ok else math.nan
    return (
        f"[{elapsed:5.0f}s/{run.duration_s:.0f}s] {total} requests  {rate:.1f} req/s  "
        f"p99 {p99:.2f} ms  errors {rec.error_rate * 100:.2f}%"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def run_locust(run: LocustRun, progress: TextIO | None = sys.stderr) -> LatencyRecorder:
    """Run the load test; returns its recorder. ``Unavailable`` when locust itself failed."""
    run.report_dir.mkdir(parents=True, exist_ok=True)
    run.results_path.unlink(missing_ok=True)
    (run.report_dir / "locust.log").unlink(missing_ok=True)  # locust appends to it
    out_path = run.report_dir / "locust.out"
    deadline = time.monotonic() + run.duration_s + run.users / run.spawn_rate + GRACE_S
    last = (0.0, 0)
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            run.command(), stdout=out, stderr=subprocess.STDOUT, env=run.environment()
        )
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    _stop(proc)
                    raise Unavailable(
                        f"locust did not finish in time; see {run.report_dir / 'locust.log'}"
                    )
                time.sleep(0.5)
                if progress is not None and run.results_path.exists():
                    with contextlib.suppress(OSError, ValueError):
                        rec = LatencyRecorder.load(run.results_path)
                        if rec.duration_s - last[0] >= 2.0:
                            print(_progress_line(run, rec, last), file=progress, flush=True)
                            last = (rec.duration_s, rec.total)
        except BaseException:
            if proc.poll() is None:
                _stop(proc)
            raise
    if proc.returncode != 0 or not run.results_path.exists():
        raise Unavailable(
            f"locust failed (exit {proc.returncode}): {_tail(out_path)}; "
            f"see {run.report_dir / 'locust.log'}"
        )
    return LatencyRecorder.load(run.results_path)
