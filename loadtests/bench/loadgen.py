"""Run one load point (protocol, concurrency, duration) with wrk or ``grpc_load``.

Both generators are separate processes, closed-loop, one connection per concurrent client
for HTTP (``wrk -t1 -cN``) and one multiplexed HTTP/2 connection for gRPC. Each result says
how much CPU the generator itself used (in cores), because on a 2-core machine the generator
competes with the server: wrk's from the kernel's accounting of the child (``wait4``),
``grpc_load``'s from its own ``os.times()`` over the measured window.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtests.prepared import PreparedRequest
from truce.errors import MissingDependency, Unavailable

HERE = Path(__file__).resolve().parent
#: wrk gives up on a request after 2 s by default: far too short for a queued CNN at c=32
WRK_TIMEOUT = "30s"


@dataclass(frozen=True)
class Measurement:
    """One measured load point."""

    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    generator_cpu: float
    error_kinds: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _wait_with_rusage(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for ``proc``; returns its user+system CPU seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise Unavailable(f"load generator {proc.args!r} did not finish in time")
        time.sleep(0.05)


def _marked_json(text: str, marker: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith(marker + " "):
            data: dict[str, Any] = json.loads(line[len(marker) + 1 :])
            return data
    raise Unavailable(f"the load generator printed no result: {text[-500:]!r}")


def run_wrk(
    base_url: str, request: PreparedRequest, concurrency: int, duration_s: float
) -> Measurement:
    """``wrk -t1 -c{concurrency} -d{duration}`` POSTing the prepared body."""
    if not wrk_available():
        raise MissingDependency("wrk", "loadtest")
    with tempfile.TemporaryDirectory(prefix="truce-wrk-") as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(request.body)
        out_path = Path(tmp) / "out.txt"
        env = {
            **os.environ,
            "WRK_BODY": str(body),
            "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in request.headers.items()),
        }
        argv = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            WRK_TIMEOUT,
            "-s",
            str(HERE / "post.lua"),
            base_url.rstrip("/") + request.target,
        ]
        start = time.monotonic()
        with out_path.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            cpu = _wait_with_rusage(proc, duration_s + 60)
        wall = time.monotonic() - start
        text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise Unavailable(f"wrk failed ({proc.returncode}): {text[-500:]}")
    data = _marked_json(text, "WRK_JSON")
    kinds = {k: int(v) for k, v in data["errors"].items() if v}
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    return Measurement(
        requests=int(data["requests"]),
        errors=sum(kinds.values()),
        duration_s=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        mean_ms=lat["mean"] / 1000,
        generator_cpu=cpu / wall if wall else math.nan,
        error_kinds=kinds,
    )


def run_grpc(
    target: str,
    request: PreparedRequest,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.0,
) -> Measurement:
    """``grpc_load`` in its own process, calling the prepared method with the prepared bytes."""
    with tempfile.TemporaryDirectory(prefix="truce-grpc-") as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(request.body)
        argv = [
            sys.executable,
            "-m",
            "loadtests.bench.grpc_load",
            "--target",
            target,
            "--method",
            request.target,
            "--body",
            str(body),
            "-c",
            str(concurrency),
            "-d",
            f"{duration_s:g}",
            "--warmup",
            f"{warmup_s:g}",
        ]
        env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=duration_s + warmup_s + 60
            )
        except subprocess.TimeoutExpired:
            raise Unavailable("the gRPC load generator did not finish in time") from None
    if done.returncode != 0:
        raise Unavailable(f"grpc_load failed ({done.returncode}): {done.stderr[-500:]}")
    data = _marked_json(done.stdout, "GRPC_JSON")
    lat = data["latency_ms"]
    errors = {str(k): int(v) for k, v in data["errors"].items()}
    return Measurement(
        requests=int(data["requests"]),
        errors=sum(errors.values()),
        duration_s=float(data["duration_s"]),
        rps=float(data["rps"]),
        p50_ms=lat["p50"],
        p90_ms=lat["p90"],
        p99_ms=lat["p99"],
        mean_ms=lat["mean"],
        generator_cpu=float(data["generator_cpu"]),
        error_kinds=errors,
    )
