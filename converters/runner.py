"""How a job is run: in a worker process (the default) or in this process (tests).

``SubprocessRunner`` starts ``python -m converters.worker`` in its own session, relays its
progress lines, and turns every way it can end into a ``JobResult``:

    result file written          the worker's own result (success or a caught error)
    killed at the deadline       "timed out after N s"
    died without a result        "crashed (SIGSEGV / exit code N)" + the log's last line

The store is never touched here; registration happens after, and only from a result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from converters.job import Job, JobResult
from converters.worker import AfterConvert, execute

Progress = Callable[[str], None]
_REPO = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT_S = 900.0


class Runner(Protocol):
    """Runs one job to a result; never raises for a failed conversion."""

    def __call__(self, job: Job, progress: Progress) -> JobResult: ...


class InProcessRunner:
    """Runs the job in this process (no isolation): for tests and debugging."""

    def __init__(self, after_convert: AfterConvert | None = None) -> None:
        self.after_convert = after_convert

    def __call__(self, job: Job, progress: Progress) -> JobResult:
        return execute(job, progress=progress, after_convert=self.after_convert)


class SubprocessRunner:
    """Runs each job in a fresh ``python -m converters.worker`` process with a deadline."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, python: str | None = None) -> None:
        self.timeout_s = timeout_s
        self.python = python or sys.executable

    def command(self, job_file: Path, result_file: Path) -> list[str]:
        return [self.python, "-m", "converters.worker", str(job_file), str(result_file)]

    def __call__(self, job: Job, progress: Progress) -> JobResult:
        work = Path(job.out_dir)
        work.mkdir(parents=True, exist_ok=True)
        job_file, result_file = work / "job.json", work / "result.json"
        job_file.write_text(job.model_dump_json())
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")])),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        with (work / "worker.log").open("wb") as log:
            proc = subprocess.Popen(
                self.command(job_file, result_file),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=work,
                env=env,
                start_new_session=True,
                text=True,
            )
        relay = threading.Thread(target=_relay, args=(proc, progress), daemon=True)
        relay.start()
        try:
            code = proc.wait(timeout=self.timeout_s)
        except BaseException as exc:
            # The worker runs in its own session, so Ctrl-C does not reach it and a timeout
            # can stop its whole process group: stop it here on every way out.
            _kill(proc)
            relay.join(timeout=5)
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            return JobResult(
                target=job.target,
                quantize=job.quantize,
                error=f"converting to {job.label} timed out after {self.timeout_s:g} s and was "
                "stopped; nothing was registered (raise --timeout for large models)",
            )
        relay.join(timeout=5)
        if result_file.is_file():
            return JobResult.model_validate_json(result_file.read_bytes())
        return JobResult(
            target=job.target,
            quantize=job.quantize,
            error=f"the converter for {job.label} crashed ({_how(code)}); nothing was "
            f"registered. Last log line: {_last_line(work / 'worker.log')}",
        )


def _relay(proc: subprocess.Popen[str], progress: Progress) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            progress(line.rstrip())
    proc.stdout.close()


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_line(log: Path, limit: int = 200) -> str:
    try:
        data = log.read_bytes()[-8192:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    lines = [ln.strip() for ln in data.splitlines() if ln.strip()]
    if not lines:
        return "(empty)"
    errors = [ln for ln in lines if "Error" in ln or "error" in ln or "Fatal" in ln]
    line = (errors or lines)[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."
