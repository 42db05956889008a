"""Benchmark results -> medians, ratios against the targets, BENCHMARKS.md and a PNG chart.

Rows are single measurements (one server variant, model, protocol, concurrency, repetition);
``aggregate`` takes medians over repetitions. The targets are those of issues 3 and 7.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REST = ("oip-rest", "torchserve-rest")
#: the generated part of BENCHMARKS.md; anything outside (e.g. `make gpu-check` results) stays
BEGIN = "<!-- make bench: generated, do not edit by hand -->"
END = "<!-- end of make bench -->"
GRPC = ("oip-grpc",)


@dataclass(frozen=True)
class Point:
    """Medians over repetitions for one (variant, model, protocol, concurrency)."""

    variant: str
    kind: str
    model: str
    protocol: str
    concurrency: int
    reps: int
    rps: float
    p50_ms: float
    p99_ms: float
    generator_cpu: float
    errors: int


def aggregate(rows: Iterable[dict[str, Any]]) -> list[Point]:
    groups: dict[tuple[str, str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["variant"], r["kind"], r["model"], r["protocol"], r["concurrency"])].append(r)

    def med(values: list[dict[str, Any]], key: str) -> float:
        xs = [float(v[key]) for v in values if not math.isnan(float(v[key]))]
        return statistics.median(xs) if xs else math.nan

    return [
        Point(
            *key,
            len(vs),
            med(vs, "rps"),
            med(vs, "p50_ms"),
            med(vs, "p99_ms"),
            med(vs, "generator_cpu"),
            sum(int(v["errors"]) for v in vs),
        )
        for key, vs in sorted(groups.items())
    ]


def _best(
    points: Sequence[Point], kind: str, model: str, conc: int, protocols: Sequence[str]
) -> Point | None:
    found = [
        p
        for p in points
        if p.kind == kind
        and p.model == model
        and p.concurrency == conc
        and p.protocol in protocols
        and p.errors == 0
    ]
    return max(found, key=lambda p: p.rps, default=None)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def target_lines(points: Sequence[Point], raw: dict[str, Any], top: int) -> list[str]:
    """The ratios the issues ask for, each with its target and PASS / MISS / n/a."""
    out = []

    def ratio(a: Point | None, b: float | None) -> float | None:
        return a.rps / b if a is not None and b else None

    def show(x: float | None, unit: str = "x") -> str:
        return "n/a" if x is None else f"{x:.2f}{unit}"

    for model in sorted({p.model for p in points}):
        truce_json = _best(points, "truce", model, top, ("oip-rest",))
        ts = _best(points, "torchserve", model, top, REST)
        mls = _best(points, "mlserver", model, top, REST)
        floor = _best(points, "floor", model, top, ("oip-rest",))
        raw_best = raw.get(model, {}).get("best_samples_per_s")
        rows = [
            (
                f"Truce/TorchServe best, REST JSON, c={top}",
                ratio(truce_json, ts.rps if ts else None),
                1.5,
            ),
            (
                f"Truce/MLServer best, REST JSON, c={top}",
                ratio(truce_json, mls.rps if mls else None),
                2.0,
            ),
            (
                f"Truce/raw best-batch, REST JSON, c={top}",
                ratio(truce_json, raw_best),
                0.7 if model == "cnn" else None,
            ),
            (
                f"Truce/HTTP floor, REST JSON, c={top}",
                ratio(truce_json, floor.rps if floor else None),
                0.3 if model == "mlp" else None,
            ),
        ]
        for proto in ("oip-rest-binary", "oip-grpc"):
            rows.append(
                (
                    f"Truce/raw best-batch, {proto}, c={top}",
                    ratio(_best(points, "truce", model, top, (proto,)), raw_best),
                    None,
                )
            )
        for label, value, want in rows:
            ok = None if value is None or want is None else value >= want
            goal = "" if want is None else f" (target >= {want:g}x)"
            out.append(f"| {model} | {label}{goal} | {show(value)} | {_verdict(ok)} |")
        raw_p50 = raw.get(model, {}).get("batches", {}).get("1", {}).get("p50_ms")
        for proto, limit in (("oip-rest", 0.5), ("oip-rest-binary", 0.5), ("oip-grpc", 0.4)):
            p = _best(points, "truce", model, 1, (proto,))
            gap = p.p50_ms - raw_p50 if p is not None and raw_p50 is not None else None
            ok = None if gap is None else gap <= limit
            out.append(
                f"| {model} | c=1 p50 minus raw forward p50, {proto} (target <= {limit} ms) "
                f"| {show(gap, ' ms')} | {_verdict(ok)} |"
            )
            # the floor's own c=1 p50 is what transport + load generator cost without a model
            f = _best(points, "floor", model, 1, (proto,))
            if f is not None:
                out.append(
                    f"| {model} | c=1 p50 of the {proto} floor (transport + generator) "
                    f"| {show(f.p50_ms, ' ms')} | info |"
                )
    return out


def markdown(
    points: Sequence[Point],
    raw: dict[str, Any],
    meta: dict[str, Any],
    failures: dict[str, str],
    chart: Path | None,
) -> str:
    top = max((p.concurrency for p in points), default=32)
    lines = [
        "## Serving benchmark (CPU)",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}. "
        f"{'**Smoke run (--quick): not for quoting.** ' if meta.get('quick') else ''}"
        f"Each point: {meta['warmup_s']:g} s warm-up, then {meta['reps']} x "
        f"{meta['duration_s']:g} s; medians over the repetitions.",
        "",
        "### Machine and versions",
        "",
        *(f"- {k}: {v}" for k, v in meta["versions"].items()),
        "",
        "### Configurations",
        "",
        *(f"- `{k}`: {v}" for k, v in meta["variants"].items()),
        "",
        "Load: HTTP by `wrk -t1 -cN` with `loadtests/bench/post.lua` (timeout "
        f"{meta['wrk_timeout']}), gRPC by `loadtests/bench/grpc_load.py` (asyncio, one channel). "
        "`gen CPU` is the generator's own CPU use in cores over the run.",
        "",
        "### Raw in-process forward (TorchScript, torch.inference_mode)",
        "",
        "| model | batch | samples/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for model, r in sorted(raw.items()):
        for batch, b in r["batches"].items():
            lines.append(
                f"| {model} | {batch} | {b['samples_per_s']:.0f} | {b['p50_ms']:.3f} "
                f"| {b['p99_ms']:.3f} |"
            )
    lines += [
        "",
        "### Servers",
        "",
        "| model | server | protocol | c | req/s | p50 ms | p99 ms | errors | gen CPU |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {p.model} | {p.variant} | {p.protocol} | {p.concurrency} | {p.rps:.0f} "
            f"| {p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.errors} | {p.generator_cpu:.2f} |"
            for p in sorted(points, key=lambda p: (p.model, p.variant, p.protocol, p.concurrency))
        ),
        "",
        "### Ratios and targets",
        "",
        "| model | ratio | value | verdict |",
        "|---|---|---|---|",
        *target_lines(points, raw, top),
        "",
    ]
    if failures:
        lines += ["### Not measured", "", *(f"- `{k}`: {v}" for k, v in failures.items()), ""]
    if chart is not None:
        lines += [f"![throughput and p99 per server and concurrency]({chart})", ""]
    return "\n".join(lines)


def chart(points: Sequence[Point], path: Path) -> Path | None:
    """Throughput and p99 per server/protocol and concurrency, one column per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return None
    models = sorted({p.model for p in points})
    if not models:
        return None
    fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    for col, model in enumerate(models):
        series: dict[str, list[Point]] = defaultdict(list)
        for p in points:
            if p.model == model:
                series[f"{p.variant} {p.protocol}"].append(p)
        for label, ps in sorted(series.items()):
            ps.sort(key=lambda p: p.concurrency)
            xs = [p.concurrency for p in ps]
            axes[0][col].plot(xs, [p.rps for p in ps], marker="o", label=label)
            axes[1][col].plot(xs, [p.p99_ms for p in ps], marker="o", label=label)
        concurrencies = sorted({p.concurrency for p in points if p.model == model})
        axes[0][col].set_title(f"{model}: throughput (req/s)")
        axes[0][col].set_ylim(bottom=0)
        axes[1][col].set_title(f"{model}: p99 latency (ms, log scale)")
        axes[1][col].set_yscale("log")
        axes[1][col].yaxis.set_major_formatter(ScalarFormatter())
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
            ax.set_xlabel("concurrency")
            ax.grid(True, alpha=0.3)
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def merge_into(path: Path, section: str) -> None:
    """Write ``section`` between the markers in ``path``, keeping everything else."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)
