"""Service-level objectives for a load test: ``--slo p99=50ms,errors=0.1%,rps=200``.

Objectives, comma-separated ``KEY=VALUE``:

    p50, p95, p99, p99.9, pN   latency percentile of good requests <= a duration
    mean, max                  mean / worst latency of good requests <= a duration
    errors                     failed / all requests <= a percentage (``0.1%``) or fraction
    rps                        requests per second (all finished requests) >= a number

Durations take ``us`` (or ``µs``), ``ms`` or ``s``; a bare number is milliseconds. A test in
which no request succeeded breaks every latency objective (there is nothing to measure).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from loadtests.recorder import LatencyRecorder
from truce.errors import InvalidArgument

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s)?\s*$")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_UNIT_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}
_HELP = "write e.g. --slo p99=50ms,errors=0.1% (keys: pN, mean, max, errors, rps)"


@dataclass(frozen=True)
class Objective:
    """One objective; ``bound`` is in ms (latency), a fraction (errors) or req/s (rps)."""

    key: str
    kind: Literal["latency", "errors", "rps"]
    bound: float
    text: str

    def measure(self, rec: LatencyRecorder) -> float:
        if self.kind == "errors":
            return rec.error_rate if rec.total else math.nan
        if self.kind == "rps":
            return rec.rps
        if self.key == "mean":
            return rec.mean_ms
        if self.key == "max":
            return rec.max_ms if rec.ok else math.nan
        return rec.percentile(float(self.key[1:]))

    def holds(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        return measured >= self.bound if self.kind == "rps" else measured <= self.bound

    def show(self, value: float) -> str:
        if math.isnan(value):
            return "n/a"
        if self.kind == "errors":
            return f"{value * 100:.3g}%"
        if self.kind == "rps":
            return f"{value:.1f} req/s"
        return f"{value:.3f} ms"


@dataclass(frozen=True)
class Verdict:
    objective: Objective
    measured: float

    @property
    def held(self) -> bool:
        return self.objective.holds(self.measured)

    def __str__(self) -> str:
        o = self.objective
        sign = ">=" if o.kind == "rps" else "<="
        state = "held" if self.held else "BROKEN"
        return f"{o.key} {o.show(self.measured)} (want {sign} {o.show(o.bound)}): {state}"


def parse_duration_ms(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise InvalidArgument(f"bad duration {text!r}: write e.g. 50ms, 0.5ms, 250us or 1s")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def _parse_fraction(text: str) -> float:
    body = text.strip()
    percent = body.endswith("%")
    try:
        value = float(body.rstrip("%"))
    except ValueError:
        raise InvalidArgument(f"bad error rate {text!r}: write e.g. 0.1% or 0.001") from None
    value = value / 100.0 if percent else value
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"error rate {text!r} is not between 0% and 100%")
    return value


def parse_slo(text: str) -> list[Objective]:
    """Parse ``p99=50ms,errors=0.1%``; ``InvalidArgument`` saying what to write otherwise."""
    objectives: dict[str, Objective] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = (s.strip() for s in part.partition("="))
        key = key.lower()
        if not eq or not value:
            raise InvalidArgument(f"bad SLO part {part!r}: {_HELP}")
        if key in objectives:
            raise InvalidArgument(f"SLO key {key!r} is given twice")
        if key == "errors":
            objectives[key] = Objective(key, "errors", _parse_fraction(value), part)
        elif key == "rps":
            try:
                bound = float(value)
            except ValueError:
                raise InvalidArgument(f"bad rps {value!r}: a number of requests/s") from None
            objectives[key] = Objective(key, "rps", bound, part)
        elif key in ("mean", "avg", "max") or _PERCENTILE.match(key):
            key = "mean" if key == "avg" else key
            objectives[key] = Objective(key, "latency", parse_duration_ms(value), part)
        else:
            raise InvalidArgument(f"unknown SLO key {key!r}: {_HELP}")
    if not objectives:
        raise InvalidArgument(f"empty SLO: {_HELP}")
    return list(objectives.values())


def check_slo(objectives: list[Objective], rec: LatencyRecorder) -> list[Verdict]:
    """One verdict per objective, measured on the recorder."""
    return [Verdict(o, o.measure(rec)) for o in objectives]
