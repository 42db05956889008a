"""``bench``: the on-device numbers to check before shipping.

Model load time, latency percentiles (p50/p90/p99) over N timed runs after a warm-up, and
peak resident memory of the process (``ru_maxrss``, which includes the interpreter and numpy).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.runner.model import BundleModel


def peak_rss_mib() -> float | None:
    """Peak resident set size of this process in MiB, where the platform reports it."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def percentile(samples_ms: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples_ms), q))


def bench(
    bundle: Path,
    *,
    runs: int = 100,
    warmup: int = 5,
    threads: int | None = None,
    batch: int = 1,
    trusted_keys: list[bytes] | None = None,
) -> dict[str, Any]:
    """Load the bundle, run it ``warmup + runs`` times on example inputs, report the numbers."""
    if runs < 1 or warmup < 0 or batch < 1:
        raise ValueError("runs and batch must be >= 1, warmup >= 0")
    rss_before = peak_rss_mib()
    start = time.perf_counter()
    model = BundleModel(bundle, threads=threads, trusted_keys=trusted_keys)
    load_s = time.perf_counter() - start
    inputs = model.example_inputs(batch=batch)
    for _ in range(warmup):
        model.predict(inputs)
    samples: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(inputs)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return {
        "model": model.name,
        "version": model.version,
        "format": model.format,
        "runs": runs,
        "warmup": warmup,
        "batch": batch,
        "threads": threads,
        "load_ms": round(load_s * 1000.0, 3),
        "latency_ms": {
            "p50": round(percentile(samples, 50), 4),
            "p90": round(percentile(samples, 90), 4),
            "p99": round(percentile(samples, 99), 4),
            "mean": round(float(np.mean(samples)), 4),
            "min": round(min(samples), 4),
            "max": round(max(samples), 4),
        },
        "throughput_per_s": round(batch * 1000.0 / max(float(np.mean(samples)), 1e-9), 2),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_load_mib": rss_before,
    }


def format_report(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    rss = r["peak_rss_mib"]
    return "\n".join(
        [
            f"{r['model']} v{r['version']} ({r['format']}), batch {r['batch']}, "
            f"threads {r['threads'] or 'default'}, {r['runs']} runs after {r['warmup']} warm-up",
            f"  load      {r['load_ms']:.1f} ms",
            f"  latency   p50 {lat['p50']:.3f} ms   p90 {lat['p90']:.3f} ms   "
            f"p99 {lat['p99']:.3f} ms",
            f"  throughput {r['throughput_per_s']:.1f} items/s",
            f"  peak RSS  {rss:.1f} MiB" if rss is not None else "  peak RSS  n/a",
        ]
    )
