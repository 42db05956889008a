"""The benchmark harness's parts (never a timed test: no assertion on speed)."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from loadtests.bench import report
from loadtests.bench.grpc_load import percentile
from loadtests.bench.peers import is_ready, requirements
from loadtests.bench.procs import ServerProcess, _alive, _descendants
from loadtests.bench.run import parse_args
from loadtests.payloads import ModelRef, build_request
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 64])


def _row(
    variant: str, kind: str, protocol: str, conc: int, rps: float, **kw: Any
) -> dict[str, Any]:
    return {
        "variant": variant,
        "kind": kind,
        "model": "mlp",
        "protocol": protocol,
        "concurrency": conc,
        "rps": rps,
        "p50_ms": kw.get("p50", 1.0),
        "p99_ms": kw.get("p99", 2.0),
        "generator_cpu": 0.1,
        "errors": kw.get("errors", 0),
    }


def test_aggregate_takes_medians_and_ratios_follow_targets(tmp_path: Path) -> None:
    rows = [_row("truce", "truce", "oip-rest", 32, r) for r in (900.0, 1000.0, 5000.0)] + [
        _row("truce", "truce", "oip-rest", 1, 400.0, p50=0.6),
        _row("torchserve", "torchserve", "torchserve-rest", 32, 500.0),
        _row("torchserve-batch", "torchserve", "torchserve-rest", 32, 800.0),
        _row("mlserver", "mlserver", "oip-rest", 32, 300.0),
        _row("mlserver", "mlserver", "oip-rest", 32, 9000.0, errors=5),  # errors: not "best"
    ]
    points = report.aggregate(rows)
    truce32 = next(p for p in points if p.kind == "truce" and p.concurrency == 32)
    assert truce32.rps == 1000.0 and truce32.reps == 3
    batch1 = {"samples_per_s": 20000.0, "p50_ms": 0.05, "p99_ms": 0.07}
    raw = {"mlp": {"best_samples_per_s": 100000.0, "batches": {"1": batch1}}}
    lines = "\n".join(report.target_lines(points, raw, 32))
    assert "Truce/TorchServe best, REST JSON, c=32 (target >= 1.5x) | 1.25x | MISS" in lines
    assert "Truce/MLServer best, REST JSON, c=32 (target >= 2x) | n/a" in lines
    assert "oip-rest (target <= 0.5 ms) | 0.55 ms | MISS" in lines
    meta = {"command": "python -m loadtests.bench --quick", "date": "today", "quick": True,
            "duration_s": 3, "warmup_s": 1, "reps": 1, "wrk_timeout": "30s",
            "versions": {"CPU": "x"}, "variants": {"truce": "default"}}  # fmt: skip
    chart = report.chart(points, tmp_path / "chart.png")
    text = report.markdown(points, raw, meta, {"mlserver-batch": "no venv"}, chart)
    assert "Smoke run" in text and "| mlp | truce | oip-rest | 32 | 1000 |" in text
    assert "`mlserver-batch`: no venv" in text
    if chart is not None:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## GPU check\n\nkept\n")
    report.merge_into(out, text)
    report.merge_into(out, text.replace("1000", "1234"))  # a rerun replaces, never appends
    merged = out.read_text()
    assert "## GPU check\n\nkept" in merged and merged.count(report.BEGIN) == 1
    assert "| 1234 |" in merged and "| 1000 |" not in merged


def test_grpc_load_percentile() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert math.isnan(percentile([], 50))


def test_parse_args_quick_never_overwrites_the_report() -> None:
    args = parse_args(["--quick", "--servers", "truce,floor", "--concurrency", "1,4"])
    assert (args.duration, args.reps, args.concurrency) == (3.0, 1, [1, 4])
    assert args.out.name == "BENCHMARKS-quick.md"
    full = parse_args(["--compare"])
    assert full.out.name == "BENCHMARKS.md" and full.reps == 3
    assert {v.kind for v in full.variants} == {"truce", "floor", "torchserve", "mlserver"}
    with pytest.raises(SystemExit):
        parse_args(["--servers", "nginx"])


def test_peer_requirements(tmp_path: Path) -> None:
    assert "torchserve==0.12.0" in requirements("torchserve").read_text()
    mlserver = requirements("mlserver").read_text()
    assert "mlserver==1.7.1" in mlserver and "uvloop==0.21.0" in mlserver
    assert not is_ready("torchserve", tmp_path)
    with pytest.raises(InvalidArgument):
        requirements("triton")


def test_stop_ends_the_whole_process_tree(tmp_path: Path) -> None:
    # a launcher whose child outlives it unless stopped: like torchserve --foreground and Java
    server = ServerProcess(
        "tree", ["bash", "-c", "sleep 120 & sleep 120 & wait"], log=tmp_path / "log"
    ).start()
    deadline = time.monotonic() + 10
    while len(_descendants(server.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [server.pid, *_descendants(server.pid)]
    assert len(tree) == 3
    server.stop(grace=5)
    assert not any(_alive(pid) for pid in tree)
    assert server.proc is not None and server.proc.returncode is not None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing: make system-deps")
def test_wrk_against_the_http_floor(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from loadtests.bench.loadgen import run_wrk
    from loadtests.bench.servers import FloorServer

    server = FloorServer(tmp_path).start()
    try:
        good = run_wrk(server.url, build_request("oip-rest", ModelRef("m"), [X]), 4, 1)
        bad_request = build_request("oip-rest", ModelRef("m"), [X])
        bad = run_wrk(
            server.url,
            type(bad_request)(**{**bad_request.__dict__, "body": b"{not json"}),
            2,
            1,
        )
    finally:
        server.stop()
    assert good.requests > 0 and good.errors == 0 and good.p99_ms >= good.p50_ms > 0
    assert good.generator_cpu > 0
    assert bad.requests > 0 and bad.errors == bad.requests and "status" in bad.error_kinds


@pytest.mark.slow
def test_grpc_load_and_raw_forward(truce_gateway: Any, mlp_torchscript: Path) -> None:
    from loadtests.bench.loadgen import run_grpc
    from loadtests.bench.raw import run_raw
    from loadtests.signatures import fetch_oip_rest

    specs = fetch_oip_rest(truce_gateway.url, ModelRef("mlp"))
    good = run_grpc(
        truce_gateway.grpc_target, build_request("oip-grpc", ModelRef("mlp"), specs), 2, 1
    )
    assert good.requests > 0 and good.errors == 0 and good.generator_cpu > 0
    missing = run_grpc(
        truce_gateway.grpc_target, build_request("oip-grpc", ModelRef("nope"), specs), 1, 0.5
    )
    assert missing.errors == missing.requests > 0 and set(missing.error_kinds) == {"NOT_FOUND"}

    raw = run_raw(mlp_torchscript, [64], 0.2)
    assert set(raw["batches"]) == {"1", "8", "32"} and raw["best_samples_per_s"] > 0
    assert raw["threads"] >= 1 and os.cpu_count()
