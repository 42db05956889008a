"""Run the benchmark: raw forward loop, then each server variant, then write the report.

    python -m loadtests.bench                 # make bench: Truce (+ HTTP floor) vs raw
    python -m loadtests.bench --compare       # make bench-compare: + TorchServe, MLServer
    python -m loadtests.bench --quick         # smoke: 3 s per point, 1 repetition

For each variant: start it on loopback with both models (TinyMLP FP32 [1,64], TinyResNet FP32
[1,3,64,64], the same TorchScript files for every server), and for each model, protocol and
concurrency: warm up, then measure ``--reps`` times. A variant that cannot start (no peer
venv, no ``truce serve`` yet) is listed under "Not measured" and the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from loadtests.bench import report
from loadtests.bench.loadgen import WRK_TIMEOUT, run_grpc, run_wrk
from loadtests.bench.meta import versions
from loadtests.bench.peers import ensure_peer
from loadtests.bench.raw import run_raw
from loadtests.bench.servers import (
    BENCH_SET,
    COMPARE_SET,
    VARIANTS,
    BenchServer,
    Variant,
    grpc_target,
    make_server,
)
from loadtests.payloads import ModelRef, build_request
from loadtests.prepared import PROTOCOLS, PreparedRequest
from loadtests.signatures import fetch_oip_rest
from model_store.signature import TensorSpec
from truce.errors import TruceError

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_SHAPES = {"mlp": [64], "cnn": [3, 64, 64]}


def build_models(folder: Path, names: list[str]) -> dict[str, Path]:
    """TorchScript files of the zoo's TinyMLP / TinyResNet (seed 0), written once."""
    from truce import zoo

    folder.mkdir(parents=True, exist_ok=True)
    makers = {"mlp": (zoo.TinyMLP, zoo.mlp_input), "cnn": (zoo.TinyResNet, zoo.cnn_input)}
    out = {}
    for name in names:
        path = folder / f"{name}.pt"
        if not path.exists():
            module, example = makers[name]
            zoo.write_torchscript(module(), example(1), path)
        out[name] = path
    return out


def _specs(server: BenchServer, model: str) -> list[TensorSpec]:
    if server.kind == "truce":  # Truce names the inputs: read them from its metadata
        return fetch_oip_rest(server.url, ModelRef(model))
    return [TensorSpec(name="input-0", datatype="FP32", shape=[-1, *SAMPLE_SHAPES[model]])]


def _measure(
    server: BenchServer, request: PreparedRequest, conc: int, seconds: float, warmup: float
) -> Any:
    if PROTOCOLS[request.protocol] == "grpc":
        target = grpc_target(server)
        if target is None:
            raise TruceError(f"{server.kind} has no gRPC port")
        return run_grpc(target, request, conc, seconds, warmup)
    if warmup > 0:
        run_wrk(server.url, request, conc, warmup)
    return run_wrk(server.url, request, conc, seconds)


def bench_variant(
    variant: Variant, args: argparse.Namespace, models: dict[str, Path], rows: list[dict[str, Any]]
) -> None:
    inputs = {m: "x:FP32:" + ",".join(map(str, [-1, *SAMPLE_SHAPES[m]])) for m in models}
    server = make_server(variant, args.work / "servers", models, inputs)
    print(f"== {variant.name}: starting", file=sys.stderr, flush=True)
    server.start()
    try:
        for model in models:
            specs = _specs(server, model)
            for protocol in variant.protocols:
                request = build_request(protocol, ModelRef(model), specs)
                for conc in args.concurrency:
                    for rep in range(args.reps):
                        warm = args.warmup if rep == 0 else 0.0
                        m = _measure(server, request, conc, args.duration, warm)
                        rows.append(
                            {
                                "variant": variant.name,
                                "kind": variant.kind,
                                "model": model,
                                "protocol": protocol,
                                "concurrency": conc,
                                "rep": rep,
                                "request_bytes": len(request.body),
                                **m.to_json(),
                            }
                        )
                        print(
                            f"   {model} {protocol} c={conc} rep {rep + 1}: {m.rps:.0f} req/s "
                            f"p50 {m.p50_ms:.2f} ms p99 {m.p99_ms:.2f} ms errors {m.errors} "
                            f"gen CPU {m.generator_cpu:.2f}",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        server.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--compare", action="store_true", help="also TorchServe and MLServer")
    p.add_argument("--quick", action="store_true", help="smoke: 3 s per point, 1 repetition")
    p.add_argument("--servers", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--duration", type=float, help="measured seconds per point (default 10)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per series (default 3)")
    p.add_argument("--reps", type=int, help="repetitions per point (default 3)")
    p.add_argument("--raw-seconds", type=float, help="seconds per raw batch size (default 5)")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    p.add_argument("--out", type=Path, help="markdown report (default BENCHMARKS.md)")
    p.add_argument("--chart", type=Path, help="PNG chart (default docs/benchmarks.png)")
    args = p.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.reps = args.reps or (1 if quick else 3)
    args.raw_seconds = args.raw_seconds or (1.0 if quick else 5.0)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.models = [m for m in args.models.split(",") if m]
    default_set = COMPARE_SET if args.compare else BENCH_SET
    names = args.servers.split(",") if args.servers else list(default_set)
    unknown = [n for n in names + args.models if n not in VARIANTS and n not in SAMPLE_SHAPES]
    if unknown:
        p.error(f"unknown server or model: {', '.join(unknown)}")
    args.variants = [VARIANTS[n] for n in names]
    # a smoke run never overwrites the committed report
    default_out = args.work / "BENCHMARKS-quick.md" if quick else ROOT / "BENCHMARKS.md"
    default_chart = (
        args.work / "benchmarks-quick.png" if quick else ROOT / "docs" / "benchmarks.png"
    )
    args.out = args.out or default_out
    args.chart = args.chart or default_chart
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    models = build_models(args.work / "models", args.models)
    print("== raw forward loop", file=sys.stderr, flush=True)
    raw = {m: run_raw(p, SAMPLE_SHAPES[m], args.raw_seconds) for m, p in models.items()}
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for variant in args.variants:
        try:
            if variant.kind in ("torchserve", "mlserver"):
                ensure_peer(variant.kind)
            bench_variant(variant, args, models, rows)
        except (TruceError, OSError, RuntimeError) as exc:
            failures[variant.name] = str(exc)[:300]
            print(f"== {variant.name}: not measured: {exc}", file=sys.stderr, flush=True)
        (args.work / "results.json").write_text(
            json.dumps({"raw": raw, "rows": rows, "failures": failures}, indent=1)
        )
    points = report.aggregate(rows)
    cli_args = argv if argv is not None else sys.argv[1:]
    meta = {
        "command": "python -m loadtests.bench " + shlex.join(cli_args),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "reps": args.reps,
        "wrk_timeout": WRK_TIMEOUT,
        "versions": versions([v.kind for v in args.variants]),
        "variants": {v.name: v.description for v in args.variants},
    }
    chart = report.chart(points, args.chart)
    link = None
    if chart is not None:
        try:
            link = chart.relative_to(args.out.parent)
        except ValueError:
            link = chart
    report.merge_into(args.out, report.markdown(points, raw, meta, failures, link))
    print(f"wrote {args.out}" + (f" and {chart}" if chart else ""), file=sys.stderr)
    return 0
