"""The summary of one load test: what ran, req/s, latency percentiles, errors by kind, SLO.

Written next to locust's own reports as ``summary.json`` (for scripts) and ``summary.md``
(for people), and printed at the end of ``truce loadtest``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.recorder import LatencyRecorder
from loadtests.slo import Verdict

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass
class Summary:
    """Everything a reader needs to judge one run."""

    host: str
    model: str
    protocol: str
    users: int
    spawn_rate: float
    duration_s: float
    request_bytes: int
    results: LatencyRecorder
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def slo_held(self) -> bool | None:
        """``None`` without an SLO; else whether every objective held."""
        return all(v.held for v in self.verdicts) if self.verdicts else None

    def to_json(self) -> dict[str, Any]:
        r = self.results

        def num(x: float) -> float | None:
            return None if math.isnan(x) or math.isinf(x) else round(x, 4)

        return {
            "host": self.host,
            "model": self.model,
            "protocol": self.protocol,
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "planned_duration_s": self.duration_s,
            "measured_duration_s": num(r.duration_s),
            "request_bytes": self.request_bytes,
            "requests": r.total,
            "ok": r.ok,
            "failed": r.failed,
            "rps": num(r.rps),
            "error_rate": num(r.error_rate),
            "errors_by_kind": dict(r.failures.most_common()),
            "latency_ms": {
                **{f"p{p:g}": num(r.percentile(p)) for p in PERCENTILES},
                "mean": num(r.mean_ms),
                "min": num(r.min_ms) if r.ok else None,
                "max": num(r.max_ms) if r.ok else None,
            },
            "slo": [
                {"objective": v.objective.text, "measured": num(v.measured), "held": v.held}
                for v in self.verdicts
            ],
            "slo_held": self.slo_held,
        }

    def to_text(self) -> str:
        r = self.results
        lines = [
            f"{self.protocol} load test of {self.model} at {self.host}",
            f"  {self.users} users (spawn {self.spawn_rate:g}/s), {r.duration_s:.1f} s, "
            f"request body {self.request_bytes} bytes",
            f"  requests {r.total}  ok {r.ok}  failed {r.failed}  "
            f"({r.error_rate * 100:.3g}% errors)  throughput {r.rps:.1f} req/s",
        ]
        if r.ok:
            pcts = "  ".join(f"p{p:g} {r.percentile(p):.3f}" for p in PERCENTILES)
            lines.append(f"  latency ms: {pcts}  mean {r.mean_ms:.3f}  max {r.max_ms:.3f}")
        else:
            lines.append("  latency: no successful request")
        for kind, count in r.failures.most_common():
            lines.append(f"  error {kind}: {count} ({count / r.total * 100:.3g}%)")
        for verdict in self.verdicts:
            lines.append(f"  SLO {verdict}")
        if self.slo_held is not None:
            lines.append(f"  SLO {'held' if self.slo_held else 'BROKEN'}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        data = self.to_json()
        rows = [
            "| metric | value |",
            "|---|---|",
            *(
                f"| {k} | {v} |"
                for k, v in data.items()
                if k not in ("latency_ms", "errors_by_kind", "slo")
            ),
            *(f"| latency {k} (ms) | {v} |" for k, v in data["latency_ms"].items()),
            *(f"| error: {k} | {v} |" for k, v in data["errors_by_kind"].items()),
            *(
                f"| SLO {s['objective']} | {s['measured']} ({'held' if s['held'] else 'BROKEN'}) |"
                for s in data["slo"]
            ),
        ]
        title = f"# Load test: {self.model} over {self.protocol}\n\n"
        files = (
            "\n\nFiles: `locust.html` (locust's report), `locust_stats.csv`, "
            "`locust_failures.csv`, `locust_stats_history.csv`, `results.json` (histogram), "
            "`request/` (the exact request sent), `locust.log`.\n"
        )
        return title + "\n".join(rows) + files

    def write(self, folder: Path) -> None:
        (folder / "summary.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        (folder / "summary.md").write_text(self.to_markdown())
