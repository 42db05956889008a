"""``truce loadtest``: load-test any server speaking OIP v2, TF Serving or TorchServe.

    truce loadtest --host http://127.0.0.1:8080 --model mlp --protocol oip-rest \
        --users 8 --duration 30s --slo p99=50ms,errors=0.1%

Steps: read the model's input signature (``signatures.resolve_inputs``), build the request
(``payloads.build_request``), run locust headless in a child process (``runner``), write
``summary.json``/``summary.md`` beside locust's CSV and HTML reports, print the summary.
Exit code: 0, or 1 when ``--slo`` was given and broken; other codes are usage/server errors.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path
from typing import Any

from loadtests.payloads import ModelRef, build_request
from loadtests.prepared import PROTOCOLS
from loadtests.runner import LocustRun, run_locust
from loadtests.signatures import resolve_inputs
from loadtests.slo import check_slo, parse_slo
from loadtests.summary import Summary
from truce.errors import InvalidArgument

SLO_BROKEN_EXIT = 1
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration_s(text: str) -> float:
    """``30s``, ``5m``, ``1h30m``, ``90`` (seconds) -> seconds."""
    m = _DURATION.match(text.strip())
    if not text.strip() or not m or not any(m.groups()):
        raise InvalidArgument(f"bad duration {text!r}: write e.g. 30s, 5m or 1h30m")
    hours, minutes, seconds = m.groups()
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    if total <= 0:
        raise InvalidArgument(f"duration {text!r} must be positive")
    return total


def parse_shape_arg(text: str) -> tuple[str, list[int]]:
    """``NAME=D0,D1,...`` -> (name, dims)."""
    name, eq, dims = text.partition("=")
    try:
        shape = [int(d) for d in dims.split(",")] if dims.strip() else []
    except ValueError:
        shape = [-2]
    if not eq or not name or any(d < 0 for d in shape):
        raise InvalidArgument(f"bad --shape {text!r}: write NAME=D0,D1,... e.g. x=4,64")
    return name, shape


def add_commands(sub: Any) -> None:
    """Register ``truce loadtest``."""
    p = sub.add_parser(
        "loadtest",
        help="load-test a model over OIP v2, TF Serving or TorchServe protocols",
        description="Load-test a model on any server speaking OIP v2, TF Serving or "
        "TorchServe; locust runs headless in its own process.",
        epilog="SLO keys: pN (p50, p99, p99.9 ...), mean, max (durations: us, ms, s), "
        "errors (0.1% or 0.001), rps (minimum req/s). Exit codes: 0 ok, 1 SLO broken, "
        "2 bad arguments, 3 model not found, 8 server unavailable.",
    )
    p.add_argument("--host", required=True, help="http://HOST:PORT (gRPC: grpc://HOST:PORT)")
    p.add_argument("--model", required=True, help="NAME or NAME:VERSION (number or alias)")
    p.add_argument("--protocol", required=True, choices=list(PROTOCOLS))
    p.add_argument("--users", type=int, default=1, help="concurrent users (default 1)")
    p.add_argument("--spawn-rate", type=float, help="users started per second (default: all)")
    p.add_argument("--duration", default="30s", help="run time, e.g. 30s or 5m (default 30s)")
    p.add_argument("--report", type=Path, help="report folder (default ./loadtest-reports/...)")
    p.add_argument("--slo", help="e.g. p99=50ms,errors=0.1%%,rps=100; exit 1 when broken")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--signature-from", metavar="URL", help="read inputs from this OIP server's metadata"
    )
    src.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:DTYPE:SHAPE",
        help="an input, e.g. x:FP32:-1,64 (repeat for several)",
    )
    p.add_argument("--batch", type=int, default=1, help="size of -1 dimensions (default 1)")
    p.add_argument(
        "--shape", action="append", default=[], metavar="NAME=D0,D1", help="concrete shape"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    p.add_argument("--timeout", default="30s", help="per-request timeout (default 30s)")
    p.add_argument("--signature-name", default="serving_default", help="TF Serving signature")
    p.add_argument("--tfserving-format", choices=["instances", "inputs"], default="instances")
    p.add_argument("--torchserve-format", choices=["json", "npy"], default="json")
    p.set_defaults(func=run)


def _default_report(model: ModelRef, protocol: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("loadtest-reports") / f"{model.name}-{protocol}-{stamp}"


def run(args: argparse.Namespace) -> int:
    """The ``truce loadtest`` handler."""
    model = ModelRef.parse(args.model)
    if args.users < 1:
        raise InvalidArgument("--users must be at least 1")
    spawn_rate = float(args.spawn_rate or args.users)
    if spawn_rate <= 0:
        raise InvalidArgument("--spawn-rate must be positive")
    duration = parse_duration_s(args.duration)
    timeout = parse_duration_s(args.timeout)
    objectives = parse_slo(args.slo) if args.slo else []
    shapes = dict(parse_shape_arg(s) for s in args.shape)

    specs = resolve_inputs(
        args.protocol,
        args.host,
        model,
        inputs=args.input,
        signature_from=args.signature_from,
        signature_name=args.signature_name,
    )
    request = build_request(
        args.protocol,
        model,
        specs,
        batch=args.batch,
        shapes=shapes,
        seed=args.seed,
        tfserving_format=args.tfserving_format,
        torchserve_format=args.torchserve_format,
        signature_name=args.signature_name if args.signature_name != "serving_default" else None,
    )
    report = args.report or _default_report(model, args.protocol)
    request.save(report / "request")
    inputs = ", ".join(f"{s.name}:{s.datatype}{s.shape}" for s in specs)
    print(
        f"load-testing {model} over {args.protocol} at {args.host}: {args.users} users, "
        f"{duration:g} s, inputs {inputs}, reports in {report}",
        file=sys.stderr,
    )
    results = run_locust(
        LocustRun(
            host=args.host,
            protocol=args.protocol,
            users=args.users,
            spawn_rate=spawn_rate,
            duration_s=duration,
            request_dir=report / "request",
            report_dir=report,
            request_timeout_s=timeout,
        )
    )
    summary = Summary(
        host=args.host,
        model=str(model),
        protocol=args.protocol,
        users=args.users,
        spawn_rate=spawn_rate,
        duration_s=duration,
        request_bytes=len(request.body),
        results=results,
        verdicts=check_slo(objectives, results),
    )
    summary.write(report)
    print(summary.to_text())
    return SLO_BROKEN_EXIT if summary.slo_held is False else 0
