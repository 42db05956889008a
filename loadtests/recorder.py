"""Latency and error bookkeeping for one load test, precise enough for sub-millisecond servers.

Locust's own statistics round response times to whole milliseconds, so a 0.4 ms p99 reads as
0; this recorder keeps a log-scale histogram (1 % wide buckets from 1 µs to ~100 s, about
1,900 counters whatever the request count) of the *successful* requests' latencies, plus the
failures by kind. Percentiles are exact to within 0.5 %. Standard library only: it runs inside
the locust process.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BASE = 1.01
_LOG_BASE = math.log(_BASE)
_MAX_BUCKET = int(math.log(1e8) / _LOG_BASE)  # 100 s in microseconds


def _bucket(ms: float) -> int:
    us = max(ms * 1000.0, 1.0)
    return min(int(math.log(us) / _LOG_BASE), _MAX_BUCKET)


def _bucket_ms(index: int) -> float:
    """The geometric middle of a bucket, in milliseconds."""
    return float(_BASE ** (index + 0.5) / 1000.0)


@dataclass
class LatencyRecorder:
    """Counts requests, keeps a histogram of good latencies and failures by kind."""

    buckets: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    sum_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0
    #: wall-clock seconds the test ran (set by whoever drives it)
    duration_s: float = 0.0

    def add(self, ms: float, error: str | None = None) -> None:
        """Record one finished request; ``error`` is its failure kind, ``None`` when good."""
        if error is not None:
            self.failures[error[:120]] += 1
            return
        self.ok += 1
        self.sum_ms += ms
        self.min_ms = min(self.min_ms, ms)
        self.max_ms = max(self.max_ms, ms)
        self.buckets[_bucket(ms)] += 1

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def error_rate(self) -> float:
        """Failed requests over all requests (0.0 when none finished)."""
        return self.failed / self.total if self.total else 0.0

    @property
    def rps(self) -> float:
        return self.total / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def mean_ms(self) -> float:
        return self.sum_ms / self.ok if self.ok else math.nan

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of good latencies in ms; NaN when there are none."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        if not self.ok:
            return math.nan
        if q >= 100:
            return self.max_ms
        rank = max(1, math.ceil(self.ok * q / 100.0))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                # clamp to what was really seen: the extremes are known exactly
                return min(max(_bucket_ms(index), self.min_ms), self.max_ms)
        return self.max_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failures": dict(self.failures),
            "sum_ms": self.sum_ms,
            "min_ms": None if self.min_ms == math.inf else self.min_ms,
            "max_ms": self.max_ms,
            "duration_s": self.duration_s,
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyRecorder:
        min_ms = data.get("min_ms")
        return cls(
            buckets=Counter({int(k): int(v) for k, v in data.get("buckets", {}).items()}),
            failures=Counter({str(k): int(v) for k, v in data.get("failures", {}).items()}),
            ok=int(data.get("ok", 0)),
            sum_ms=float(data.get("sum_ms", 0.0)),
            min_ms=math.inf if min_ms is None else float(min_ms),
            max_ms=float(data.get("max_ms", 0.0)),
            duration_s=float(data.get("duration_s", 0.0)),
        )

    def save(self, path: Path) -> None:
        """Write atomically, so a reader polling the file never sees half of it."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LatencyRecorder:
        return cls.from_json(json.loads(path.read_text()))
