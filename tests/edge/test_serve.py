"""``serve``: an OIP v2 JSON client against the runner's HTTP endpoint, and bad requests."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.edge.conftest import build_test_bundle, runner_cmd, runner_env

MAX_BODY = 65536


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data) if data else None
        finally:
            conn.close()

    def infer(self, body: Any, path: str = "/v2/models/mlp/infer") -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", path, raw, {"Content-Type": "application/json"})


@contextlib.contextmanager
def start_server(bundle: Path) -> Iterator[Server]:
    proc = subprocess.Popen(
        runner_cmd("serve", ".", "--port", "0", "--max-body", str(MAX_BODY), "--quiet"),
        cwd=bundle,
        env=runner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        yield Server(proc, int(m.group(1)))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()


@pytest.fixture(scope="module")
def served_bundle(tmp_path_factory: pytest.TempPathFactory, tflite_mlp: Path) -> Path:
    return build_test_bundle(tmp_path_factory.mktemp("serve") / "b", tflite_mlp)


@pytest.fixture(scope="module")
def server(served_bundle: Path) -> Iterator[Server]:
    with start_server(served_bundle) as s:
        yield s


def _good(x: np.ndarray | None = None) -> dict[str, Any]:
    x = np.ones((1, 64), np.float32) if x is None else x
    return {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def _alive(s: Server) -> None:
    assert s.request("GET", "/v2/health/live")[0] == 200
    status, body = s.infer(_good())
    assert status == 200, body
    assert s.proc.poll() is None


def test_tritonclient(server: Server, tflite_mlp: Path) -> None:
    th = pytest.importorskip("tritonclient.http")
    from edge.interpreter import TFLiteModel

    c = th.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("mlp")
    meta = c.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    inp = th.InferInput("x", [4, 64], "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    out_name = meta["outputs"][0]["name"]
    res = c.infer(
        "mlp",
        [inp],
        model_version="1",
        outputs=[th.InferRequestedOutput(out_name, binary_data=False)],
    )
    ref = TFLiteModel(tflite_mlp).predict({"x": x})[out_name]
    np.testing.assert_allclose(res.as_numpy(out_name), ref, rtol=1e-6, atol=1e-6)
    c.close()


def test_metadata_routes(server: Server) -> None:
    assert server.request("GET", "/v2")[1]["name"] == "truce-edge"
    assert server.request("GET", "/v2/health/ready") == (200, {"ready": True})
    assert server.request("GET", "/v2/models/mlp/versions/1/ready")[0] == 200
    status, meta = server.request("GET", "/v2/models/mlp/versions/1")
    assert status == 200 and meta["versions"] == ["1"] and meta["platform"] == "tflite"


DEEP = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "needle"),
    [
        ("POST", "/v2/models/mlp/infer", b'{"inputs": [', None, 400, "not valid JSON"),
        ("POST", "/v2/models/mlp/infer", b"\xff\xfe{}", None, 400, "UTF-8"),
        ("POST", "/v2/models/mlp/infer", b"", None, 400, "empty"),
        ("POST", "/v2/models/mlp/infer", b"{}", {"Content-Type": "text/plain"}, 415, "JSON"),
        ("POST", "/v2/models/mlp/infer", DEEP[: MAX_BODY - 10], None, 400, "JSON"),
        ("POST", "/v2/models/mlp/infer", b"[1]", None, 400, "JSON object"),
        ("POST", "/v2/models/nope/infer", b"{}", None, 404, "unknown model"),
        ("POST", "/v2/models/mlp/versions/7/infer", b"{}", None, 404, "unknown version"),
        ("POST", "/v2/models/mlp/versions/..%2f/infer", b"{}", None, 400, "malformed"),
        ("GET", "/v2/models/mlp/infer", None, None, 405, "POST"),
        ("DELETE", "/v2/models/mlp", None, None, 405, "GET"),
        ("POST", "/v2/health/live", b"{}", None, 405, "GET"),
        ("GET", "/v3/nothing", None, None, 404, "no route"),
        ("PUT", "/", b"x", None, 404, "no route"),
        ("POST", "/v2/models/mlp/infer", b"x" * (MAX_BODY + 1), None, 413, "at most"),
        (
            "POST",
            "/v2/models/mlp/infer",
            b"{}",
            {"Inference-Header-Content-Length": "2"},
            400,
            "binary",
        ),
    ],
)
def test_bad_requests(
    server: Server,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None,
    status: int,
    needle: str,
) -> None:
    got, err = server.request(method, path, body, headers)
    assert got == status, err
    assert needle in err["error"]
    assert "Traceback" not in err["error"] and "/tmp" not in err["error"]
    _alive(server)


def _input(**changes: Any) -> dict[str, Any]:
    item = {"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64, **changes}
    return {"inputs": [item]}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_input(datatype="FP64"), "dtype float64, expected FP32"),
        (_input(datatype="NOPE"), "unknown datatype"),
        (_input(shape=[1, 63], data=[0.5] * 63), "expected [-1, 64]"),
        (_input(shape=[1, 64], data=[0.5] * 10), "needs 64 values, got 10"),
        (_input(shape=[1, -5]), "integers >= 0"),
        (_input(shape=[2**40, 2**40]), "too many elements"),
        (_input(data=[[0.5] * 32, [0.5] * 31]), "ragged"),
        (_input(data=["a"] * 64), "not of datatype FP32"),
        (_input(data="abc"), "must be a (flat or nested) JSON list"),
        (_input(name="y"), "unexpected input 'y'"),
        ({"inputs": []}, "non-empty 'inputs'"),
        ({"inputs": [_input()["inputs"][0]] * 2}, "given twice"),
        ({**_input(), "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
        ({**_input(), "id": 5}, "'id' must be a string"),
        (_input(datatype="INT8", data=[300] * 64), "out of range"),
    ],
)
def test_bad_tensors(server: Server, body: dict[str, Any], needle: str) -> None:
    status, err = server.infer(body)
    assert status == 400, err
    assert needle in err["error"]
    _alive(server)


def test_nested_data_nan_and_ids(server: Server) -> None:
    body = _input(shape=[2, 64], data=[[0.1] * 64, [0.2] * 64])
    body["id"] = "req-1"
    status, res = server.infer(body)
    assert status == 200 and res["id"] == "req-1" and res["outputs"][0]["shape"] == [2, 10]
    # NaN in, NaN out: written with the JSON NaN literal, read back by Python's json
    raw = json.dumps(_input(data=[float("nan")] * 64)).encode()
    status, res = server.infer(raw)
    assert status == 200 and all(np.isnan(v) for v in res["outputs"][0]["data"])


def test_chunked_body_refused(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/v2/models/mlp/infer")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"2\r\n{}\r\n0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
    conn.close()
    _alive(server)


def test_sigterm_exits_cleanly(served_bundle: Path) -> None:
    with start_server(served_bundle) as s:
        _alive(s)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=10) == 0


class _SlowModel:
    """Stands in for a BundleModel whose inference blocks until released."""

    def __init__(self) -> None:
        from edge.runner.model import Spec

        self.name, self.version, self.format = "slow", "1", "tflite"
        self.inputs = [Spec({"name": "x", "datatype": "FP32", "shape": [-1, 2]})]
        self.outputs = [Spec({"name": "y", "datatype": "FP32", "shape": [-1, 2]})]
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        assert self.release.wait(30)
        return {"y": inputs["x"] * 2}


def test_busy_device_answers_503() -> None:
    from edge.runner.serve import EdgeServer

    model = _SlowModel()
    srv = EdgeServer(("127.0.0.1", 0), model, max_inflight=1, quiet=True)  # type: ignore[arg-type]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    s = Server(None, srv.server_address[1])  # type: ignore[arg-type]
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    results: list[tuple[int, Any]] = []
    first = threading.Thread(target=lambda: results.append(s.infer(body, "/v2/models/slow/infer")))
    try:
        first.start()
        assert model.entered.wait(30)
        status, err = s.infer(body, "/v2/models/slow/infer")
        assert status == 503 and "busy" in err["error"]
        model.release.set()
        first.join(30)
        assert results[0][0] == 200 and results[0][1]["outputs"][0]["data"] == [2.0, 4.0]
    finally:
        model.release.set()
        srv.shutdown()
        srv.server_close()
