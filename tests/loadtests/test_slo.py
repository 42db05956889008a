"""The SLO parser and gate, the latency recorder, failure kinds and the summary."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import numpy as np
import pytest

from loadtests.cli import parse_duration_s, parse_shape_arg
from loadtests.failures import RequestFailure, exception_kind, http_failure
from loadtests.recorder import LatencyRecorder
from loadtests.slo import check_slo, parse_duration_ms, parse_slo
from loadtests.summary import Summary
from truce.errors import InvalidArgument


def _recorder(latencies_ms: list[float], failures: dict[str, int] | None = None) -> LatencyRecorder:
    rec = LatencyRecorder(duration_s=10.0)
    for ms in latencies_ms:
        rec.add(ms)
    for kind, n in (failures or {}).items():
        for _ in range(n):
            rec.add(1.0, kind)
    return rec


def test_parse_slo() -> None:
    objectives = {
        o.key: o for o in parse_slo("p99=50ms, errors=0.1%, p99.9=1s, mean=250us, rps=100")
    }
    assert objectives["p99"].bound == 50.0 and objectives["p99"].kind == "latency"
    assert objectives["p99.9"].bound == 1000.0
    assert objectives["mean"].bound == pytest.approx(0.25)
    assert objectives["errors"].bound == pytest.approx(0.001)
    assert objectives["rps"].bound == 100.0 and objectives["rps"].kind == "rps"
    assert parse_slo("errors=0.02")[0].bound == pytest.approx(0.02)
    assert parse_slo("avg=3")[0].key == "mean"  # a bare number is milliseconds
    assert parse_duration_ms("0.001ms") == pytest.approx(0.001)


@pytest.mark.parametrize(
    "text",
    ["", "p99", "p99=", "p99=fast", "p99=-1ms", "latency=5ms", "errors=150%", "errors=x",
     "rps=many", "p99=5ms,p99=6ms", "p999x=1ms"],
)  # fmt: skip
def test_parse_slo_refuses(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_slo(text)


def test_gate_holds_and_breaks() -> None:
    rec = _recorder([1.0] * 990 + [40.0] * 10, {"HTTP 503": 1})
    verdicts = {v.objective.key: v for v in check_slo(parse_slo("p99=50ms,errors=1%,rps=50"), rec)}
    assert all(v.held for v in verdicts.values())
    assert verdicts["rps"].measured == pytest.approx(100.1)
    broken = check_slo(parse_slo("p99.5=10ms,errors=0.01%,rps=1000"), rec)
    assert not any(v.held for v in broken)
    assert "BROKEN" in str(broken[0]) and "want <= 10.000 ms" in str(broken[0])


def test_impossible_slo_breaks_even_for_fast_requests() -> None:
    # locust rounds to whole ms (a 0.3 ms p99 reads as 0); the recorder does not
    rec = _recorder([0.3] * 100)
    (verdict,) = check_slo(parse_slo("p99=0.001ms"), rec)
    assert not verdict.held and verdict.measured == pytest.approx(0.3, rel=0.01)


def test_gate_without_successes_breaks_latency_and_errors() -> None:
    rec = _recorder([], {"connection refused": 5})
    verdicts = check_slo(parse_slo("p99=1s,errors=50%"), rec)
    assert [v.held for v in verdicts] == [False, False]
    assert math.isnan(verdicts[0].measured)
    assert not check_slo(parse_slo("errors=1%"), LatencyRecorder())[0].held  # nothing ran


def test_recorder_percentiles_match_numpy() -> None:
    values = np.random.default_rng(0).lognormal(0, 1, 20_000)
    rec = _recorder(list(values))
    for q in (50, 90, 95, 99, 99.9):
        assert rec.percentile(q) == pytest.approx(np.percentile(values, q), rel=0.01)
    assert rec.percentile(100) == values.max() and rec.percentile(0) == pytest.approx(
        values.min(), rel=0.01
    )
    assert rec.mean_ms == pytest.approx(values.mean())
    with pytest.raises(ValueError):
        rec.percentile(101)


def test_recorder_round_trip(tmp_path: Path) -> None:
    rec = _recorder([0.5, 2.0, 7.5], {"HTTP 400": 2, "gRPC UNAVAILABLE": 1})
    rec.save(tmp_path / "r.json")
    back = LatencyRecorder.load(tmp_path / "r.json")
    assert back == rec
    assert (back.total, back.failed, back.error_rate) == (6, 3, 0.5)
    assert LatencyRecorder.from_json(LatencyRecorder().to_json()) == LatencyRecorder()


def test_http_failure_kinds() -> None:
    assert http_failure(200, b'{"outputs":[]}', None, b'"outputs"') is None
    assert http_failure(200, b"", None, b"") is None
    assert http_failure(503, b"busy", None, b"") == "HTTP 503"
    assert http_failure(200, b"{}", None, b'"outputs"') == 'bad response (no "outputs")'
    assert http_failure(0, None, ConnectionRefusedError(), b"") == "connection refused"
    assert http_failure(0, None, None, b"") == "no response"


def test_exception_kinds() -> None:
    assert exception_kind(RequestFailure("gRPC UNAVAILABLE")) == "gRPC UNAVAILABLE"
    assert exception_kind(ConnectionResetError()) == "connection reset"
    assert exception_kind(TimeoutError()) == "timeout"
    assert exception_kind(OSError(errno.ECONNREFUSED, "refused")) == "connection refused"
    assert exception_kind(ValueError("x")) == "ValueError"


def test_summary_files(tmp_path: Path) -> None:
    rec = _recorder([1.0, 2.0, 3.0], {"HTTP 503": 1})
    summary = Summary(
        host="http://127.0.0.1:1",
        model="mlp:1",
        protocol="oip-rest",
        users=2,
        spawn_rate=2,
        duration_s=10,
        request_bytes=100,
        results=rec,
        verdicts=check_slo(parse_slo("errors=0%"), rec),
    )
    assert summary.slo_held is False
    summary.write(tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["requests"] == 4 and data["errors_by_kind"] == {"HTTP 503": 1}
    assert data["slo_held"] is False and data["latency_ms"]["max"] == 3.0
    assert "HTTP 503" in (tmp_path / "summary.md").read_text()
    assert "SLO BROKEN" in summary.to_text()


def test_cli_argument_parsers() -> None:
    assert parse_duration_s("30s") == 30 and parse_duration_s("2m") == 120
    assert parse_duration_s("1h30m") == 5400 and parse_duration_s("90") == 90
    assert parse_duration_s("0.5s") == 0.5
    for bad in ("", "0s", "soon", "5x", "-1s"):
        with pytest.raises(InvalidArgument):
            parse_duration_s(bad)
    assert parse_shape_arg("x=4,64") == ("x", [4, 64])
    for bad in ("x", "=1", "x=a", "x=-1"):
        with pytest.raises(InvalidArgument):
            parse_shape_arg(bad)
