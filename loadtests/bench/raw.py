"""The raw in-process forward loop: the ceiling every server is compared with.

Loads the same TorchScript file the servers load and calls it in a loop under
``torch.inference_mode()`` with torch's default threads: batch 1 for latency (p50/p99 of one
call) and several batch sizes for throughput (samples/s; the best one is "raw best-batch").
Runs in its own process and prints ``RAW_JSON {...}``:

    python -m loadtests.bench.raw --model build/bench/models/mlp.pt --shape 64 -d 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BATCHES = (1, 8, 32)


def _percentile(sorted_values: list[float], q: float) -> float:
    index = max(0, min(len(sorted_values) - 1, round(len(sorted_values) * q / 100.0) - 1))
    return sorted_values[index]


def measure(model_path: Path, sample_shape: list[int], seconds: float) -> dict[str, Any]:
    import torch

    model = torch.jit.load(str(model_path), map_location="cpu").eval()
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "batches": {}}
    with torch.inference_mode():
        for batch in BATCHES:
            x = torch.randn(batch, *sample_shape)
            warm_until = time.perf_counter() + min(1.0, seconds / 3)
            while time.perf_counter() < warm_until:
                model(x)
            times: list[float] = []
            stop_at = time.perf_counter() + seconds
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    break
                model(x)
                times.append(time.perf_counter() - t0)
            total = sum(times)
            times.sort()
            result["batches"][str(batch)] = {
                "calls": len(times),
                "samples_per_s": batch * len(times) / total,
                "p50_ms": _percentile(times, 50) * 1000,
                "p99_ms": _percentile(times, 99) * 1000,
            }
    best = max(result["batches"].items(), key=lambda kv: kv[1]["samples_per_s"])
    result["best_batch"] = int(best[0])
    result["best_samples_per_s"] = best[1]["samples_per_s"]
    return result


def run_raw(model_path: Path, sample_shape: list[int], seconds: float) -> dict[str, Any]:
    """``measure`` in a fresh process (nothing else loaded, torch's default threads)."""
    argv = [
        sys.executable,
        "-m",
        "loadtests.bench.raw",
        "--model",
        str(model_path),
        "--shape",
        ",".join(map(str, sample_shape)),
        "-d",
        f"{seconds:g}",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds * len(BATCHES) * 3 + 120
    )
    for line in done.stdout.splitlines():
        if line.startswith("RAW_JSON "):
            data: dict[str, Any] = json.loads(line[len("RAW_JSON ") :])
            return data
    raise RuntimeError(f"raw forward failed ({done.returncode}): {done.stderr[-500:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model", required=True, type=Path, help="TorchScript file")
    p.add_argument("--shape", required=True, help="one sample's shape, e.g. 3,64,64")
    p.add_argument("-d", "--seconds", type=float, default=5.0, help="seconds per batch size")
    args = p.parse_args(argv)
    shape = [int(d) for d in args.shape.split(",")]
    print("RAW_JSON " + json.dumps(measure(args.model, shape, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
