"""A small closed-loop gRPC load generator (asyncio), run in its own process by the benchmark.

``concurrency`` tasks share one channel (one HTTP/2 connection, like ``ghz``'s default) and
each sends the same pre-serialized request bytes back to back: no protobuf work on the client.
After ``--warmup`` seconds it measures for ``--duration`` seconds and prints one line
``GRPC_JSON {...}`` with the request count, errors by status, latency percentiles and its own
CPU time over the measured window (so the report can say what the generator itself cost).

    python -m loadtests.bench.grpc_load --target 127.0.0.1:8081 \
        --method /inference.GRPCInferenceService/ModelInfer --body req.bin -c 8 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

_LIMIT = 256 * 1024 * 1024


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(len(sorted_values) * q / 100.0))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _run(args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    options = [
        ("grpc.max_send_message_length", _LIMIT),
        ("grpc.max_receive_message_length", _LIMIT),
    ]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with aio.insecure_channel(args.target, options=options) as channel:
        call = channel.unary_unary(args.method)
        start = time.perf_counter()
        measure_from = start + args.warmup
        stop_at = measure_from + args.duration

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await call(body, timeout=args.timeout)
                    error = None
                except grpc.RpcError as exc:
                    code = exc.code() if callable(getattr(exc, "code", None)) else None
                    error = getattr(code, "name", "error")
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if error is None:
                        latencies.append(t1 - t0)
                    else:
                        errors[error] += 1

        async def cpu_at(when: float) -> os.times_result:
            await asyncio.sleep(max(0.0, when - time.perf_counter()))
            return os.times()

        cpu_start_task = asyncio.create_task(cpu_at(measure_from))
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        cpu_end = os.times()
        cpu_start = await cpu_start_task
    wall = max(time.perf_counter() - measure_from, 1e-9)
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    latencies.sort()
    total = len(latencies) + sum(errors.values())
    return {
        "requests": total,
        "ok": len(latencies),
        "errors": dict(errors),
        "duration_s": wall,
        "rps": total / wall,
        "latency_ms": {
            "p50": percentile(latencies, 50) * 1000,
            "p90": percentile(latencies, 90) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "mean": (sum(latencies) / len(latencies) * 1000) if latencies else math.nan,
            "max": (latencies[-1] * 1000) if latencies else math.nan,
        },
        "generator_cpu": cpu / wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--target", required=True, help="HOST:PORT")
    p.add_argument("--method", required=True, help="/package.Service/Method")
    p.add_argument("--body", required=True, type=Path, help="serialized request message")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds before measuring")
    p.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        p.error("concurrency must be >= 1 and duration > 0")
    result = asyncio.run(_run(args, args.body.read_bytes()))
    print("GRPC_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
