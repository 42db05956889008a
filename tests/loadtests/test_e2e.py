"""``truce loadtest`` end to end against real servers on 127.0.0.1 (2 users, a few seconds).

TorchServe 0.12 (its peer venv) for the TorchServe dialect and the SLO gate; the Truce gateway
for the Open Inference Protocol (REST JSON, REST binary, gRPC, signature from its metadata);
a TF Serving gRPC server built from ``tensorflow-serving-api`` for the TF Serving dialect.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.loadtests.cli_run import run_loadtest

pytestmark = pytest.mark.slow

REPORT_FILES = (
    "summary.json",
    "summary.md",
    "results.json",
    "locust.html",
    "locust_stats.csv",
    "locust_failures.csv",
    "request/request.json",
    "request/body.bin",
)


def _assert_clean_run(run: Any, protocol: str) -> dict[str, Any]:
    assert run.code == 0, run.stderr[-2000:]
    summary: dict[str, Any] = run.summary
    assert summary["protocol"] == protocol
    assert summary["ok"] > 0, summary
    assert summary["failed"] == 0, summary["errors_by_kind"]
    assert summary["latency_ms"]["p99"] > 0
    for name in REPORT_FILES:
        assert (run.report / name).is_file(), name
    assert "req/s" in run.stdout and "p99" in run.stdout
    return summary


def test_torchserve_rest_and_slo_gate(torchserve_url: str, tmp_path: Path) -> None:
    common = ("--host", torchserve_url, "--model", "mlp", "--protocol", "torchserve-rest",
              "--input", "x:FP32:-1,64", "--users", "2")  # fmt: skip
    run = run_loadtest(tmp_path / "ok", *common, "--duration", "5s", "--slo", "errors=0%")
    summary = _assert_clean_run(run, "torchserve-rest")
    assert summary["slo_held"] is True
    assert "[" in run.stderr and "req/s" in run.stderr  # progress lines while it ran

    broken = run_loadtest(tmp_path / "slo", *common, "--duration", "3s", "--slo", "p99=0.001ms")
    assert broken.code == 1, broken.stderr[-2000:]
    assert broken.summary["slo_held"] is False and broken.summary["ok"] > 0
    assert "SLO BROKEN" in broken.stdout


def test_error_kinds_are_counted(torchserve_url: str, tmp_path: Path) -> None:
    run = run_loadtest(
        tmp_path / "r", "--host", torchserve_url, "--model", "nosuchmodel",
        "--protocol", "torchserve-rest", "--input", "x:FP32:1,64", "--duration", "3s",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]  # no SLO given: errors are reported, not gated
    summary = run.summary
    assert summary["ok"] == 0 and summary["failed"] > 0
    assert set(summary["errors_by_kind"]) == {"HTTP 404"}


def test_torchserve_needs_an_input_signature(tmp_path: Path) -> None:
    run = run_loadtest(
        tmp_path / "r", "--host", "http://127.0.0.1:9", "--model", "mlp",
        "--protocol", "torchserve-rest",
    )  # fmt: skip
    assert run.code == 2
    assert "--input" in run.stderr and "Traceback" not in run.stderr


def test_unreachable_server_is_connection_refused(tmp_path: Path) -> None:
    run = run_loadtest(
        tmp_path / "r", "--host", "http://127.0.0.1:9", "--model", "mlp", "--protocol",
        "oip-rest", "--input", "x:FP32:1,64", "--duration", "2s", "--slo", "errors=1%",
    )  # fmt: skip
    assert run.code == 1
    assert set(run.summary["errors_by_kind"]) == {"connection refused"}


@pytest.mark.parametrize("protocol", ["oip-rest", "oip-rest-binary", "oip-grpc"])
def test_truce_open_inference_protocol(truce_gateway: Any, protocol: str, tmp_path: Path) -> None:
    host = f"grpc://{truce_gateway.grpc_target}" if protocol == "oip-grpc" else truce_gateway.url
    run = run_loadtest(
        tmp_path / "r", "--host", host, "--model", "mlp", "--protocol", protocol,
        "--users", "2", "--duration", "4s", "--slo", "errors=0%",
    )  # fmt: skip
    _assert_clean_run(run, protocol)
    assert "inputs x:FP32[-1, 64]" in run.stderr  # read from the server's own metadata


def test_grpc_errors_are_counted_by_status(truce_gateway: Any, tmp_path: Path) -> None:
    run = run_loadtest(
        tmp_path / "r", "--host", f"grpc://{truce_gateway.grpc_target}", "--model", "nope",
        "--protocol", "oip-grpc", "--input", "x:FP32:1,64", "--duration", "2s",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]
    assert run.summary["ok"] == 0
    assert set(run.summary["errors_by_kind"]) == {"gRPC NOT_FOUND"}


def test_truce_signature_from_another_server(truce_gateway: Any, tmp_path: Path) -> None:
    run = run_loadtest(
        tmp_path / "r", "--host", truce_gateway.url, "--model", "mlp:1", "--protocol",
        "oip-rest-binary", "--signature-from", truce_gateway.url, "--batch", "4",
        "--duration", "2s",
    )  # fmt: skip
    summary = _assert_clean_run(run, "oip-rest-binary")
    assert summary["request_bytes"] > 4 * 64 * 4


def _has_route(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("protocol", "probe"), [("tfserving-rest", "/v1/models/mlp"), ("torchserve-rest", "/ping")]
)
def test_truce_compatibility_dialects(
    truce_gateway: Any, protocol: str, probe: str, tmp_path: Path
) -> None:
    if not _has_route(truce_gateway.url + probe):
        pytest.skip(f"Truce does not speak {protocol} yet (issue 4)")
    run = run_loadtest(
        tmp_path / "r", "--host", truce_gateway.url, "--model", "mlp", "--protocol", protocol,
        "--input", "x:FP32:-1,64", "--duration", "3s",
    )  # fmt: skip
    _assert_clean_run(run, protocol)


@pytest.mark.tensorflow
def test_tfserving_grpc(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_serving")
    from tests.loadtests.tfserving_fake import start_tfserving

    server, port = start_tfserving()
    try:
        run = run_loadtest(
            tmp_path / "r", "--host", f"grpc://127.0.0.1:{port}", "--model", "tiny",
            "--protocol", "tfserving-grpc", "--users", "2", "--duration", "3s",
        )  # fmt: skip
    finally:
        server.stop(grace=None)
    _assert_clean_run(run, "tfserving-grpc")
    assert "inputs x:FP32[-1, 4]" in run.stderr  # from GetModelMetadata's signature_def
