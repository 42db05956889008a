"""OIP REST over real HTTP (uvicorn on loopback) with fake runtimes: every bad input of
RELIABILITY.md gets its 4xx and the server stays alive; limits, ids, errors, queue full,
deadlines, disconnects, the admin listener and draining."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.store import ModelStore
from tests.gateway.conftest import InProcessGateway
from tests.gateway.fakes import Behavior, add_fake_version

th = pytest.importorskip("tritonclient.http")
LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    root = tmp_path_factory.mktemp("rest") / "store"
    store = ModelStore(root)
    add_fake_version(store, "double")
    add_fake_version(store, "batched", max_batch_size=8)
    add_fake_version(store, "small_queue", max_queue_size=1)
    with InProcessGateway(root, max_request_bytes=LIMIT, max_json_depth=32) as server:
        yield server


@pytest.fixture
def client(gw: InProcessGateway) -> Iterator[httpx.Client]:
    gw.behavior.gate, gw.behavior.poison = None, None
    with httpx.Client(base_url=gw.http_url, timeout=30) as c:
        yield c
    if gw.behavior.gate is not None:
        gw.behavior.gate.set()
    gw.behavior.gate, gw.behavior.poison, gw.behavior.gated = None, None, None
    assert_alive(gw)


def assert_alive(gw: InProcessGateway) -> None:
    """Live answers 200 and a known-good inference succeeds."""
    assert httpx.get(f"{gw.http_url}/v2/health/live", timeout=10).status_code == 200
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    r = httpx.post(f"{gw.http_url}/v2/models/double/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2, 4, 6, 8]


def infer_body(data: object = None, **tensor: object) -> dict[str, object]:
    t = {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": data or list(range(8))}
    t.update(tensor)
    return {"inputs": [t]}


def test_tritonclient_json_and_binary(gw: InProcessGateway) -> None:
    c = th.InferenceServerClient(gw.http)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("double")
    assert c.get_model_metadata("double")["inputs"][0]["shape"] == [-1, 4]
    assert c.get_server_metadata()["name"] == "truce"
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for binary in (True, False):
        inp = th.InferInput("x", [3, 4], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = th.InferRequestedOutput("y", binary_data=binary)
        for outputs in (None, [out]):
            r = c.infer("double", [inp], outputs=outputs, request_id="r1")
            np.testing.assert_array_equal(r.as_numpy("y"), x * 2)
            assert r.get_response()["id"] == "r1"
    r = c.infer("double", [inp], model_version="1")
    assert r.get_response()["model_version"] == "1"
    c.close()


def test_concurrent_batched_requests_get_their_own_rows(gw: InProcessGateway) -> None:
    results: dict[int, np.ndarray] = {}

    def one(i: int) -> None:
        x = np.full((1 + i % 3, 4), float(i), np.float32)
        body = infer_body(x.ravel().tolist(), shape=list(x.shape))
        r = httpx.post(f"{gw.http_url}/v2/models/batched/infer", json=body, timeout=30)
        results[i] = np.array(r.json()["outputs"][0]["data"]).reshape(x.shape)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, arr in results.items():
        np.testing.assert_array_equal(arr, np.full((1 + i % 3, 4), 2.0 * i))
    assert len(results) == 12


BAD_BODIES: list[tuple[str, bytes, dict[str, str], str]] = [
    ("truncated", b'{"inputs": [{"name": "x"', {}, "not valid JSON"),
    ("invalid", b"{nope}", {}, "not valid JSON"),
    ("bad utf8", b'{"inputs": "\xff\xfe"}', {}, "not valid JSON"),
    ("empty", b"", {}, "not valid JSON"),
    ("not object", b"[1, 2]", {}, "JSON object"),
    ("deep", b'{"a":' * 40 + b"1" + b"}" * 40, {}, "nests deeper than 32"),
    ("no inputs", b'{"inputs": []}', {}, "non-empty 'inputs'"),
    ("wrong content type", b"{}", {"content-type": "text/xml"}, "not accepted"),
    ("header length", b"{}", {"inference-header-content-length": "99"}, "Content-Length"),
    ("header length text", b"{}", {"inference-header-content-length": "x"}, "Content-Length"),
]


@pytest.mark.parametrize(("case", "body", "headers", "message"), BAD_BODIES, ids=lambda v: "")
def test_malformed_bodies(
    client: httpx.Client, case: str, body: bytes, headers: dict[str, str], message: str
) -> None:
    r = client.post("/v2/models/double/infer", content=body, headers=headers)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert message in r.json()["error"], (case, r.text)


BAD_TENSORS: list[tuple[dict[str, object], str]] = [
    ({"datatype": "FP64"}, "datatype FP64, expected FP32"),
    ({"datatype": "FLOAT"}, "unknown datatype"),
    ({"shape": [2, 5], "data": list(range(10))}, "shape [2, 5], expected [-1, 4]"),
    ({"shape": [3, 4]}, "holds 12 elements but 'data' has 8"),
    ({"data": [[1, 2, 3, 4], [5, 6, 7]]}, "not a regular array"),
    ({"data": ["a"] * 8}, "must be numbers"),
    ({"data": [True] * 8}, "must be numbers"),
    ({"data": [1e40] * 8}, "outside the FP32 range"),
    ({"name": "w"}, "unexpected input 'w'"),
    ({"shape": [-1, 4]}, "size >= 0"),
    ({"shape": [2**40, 2**40]}, "at most"),
    ({"shape": [1] * 40}, "dimensions"),
    ({"shape": "2,4"}, "'shape' list"),
    ({"data": {"a": 1}}, "'data' must be a list"),
]


@pytest.mark.parametrize(("tensor", "message"), BAD_TENSORS, ids=lambda v: "")
def test_bad_tensors_get_400_naming_the_input(
    client: httpx.Client, gw: InProcessGateway, tensor: dict[str, object], message: str
) -> None:
    before = len(gw.behavior.calls)
    r = client.post("/v2/models/double/infer", json=infer_body(**tensor))
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert len(gw.behavior.calls) == before, "the model must not run"


def test_missing_and_duplicate_inputs(client: httpx.Client) -> None:
    t = infer_body()["inputs"][0]  # type: ignore[index]
    r = client.post("/v2/models/double/infer", json={"inputs": [t, t]})
    assert r.status_code == 400 and "given twice" in r.json()["error"]
    other = dict(t, name="w")  # type: ignore[arg-type]
    r = client.post("/v2/models/double/infer", json={"inputs": [other]})
    assert r.status_code == 400 and "'w'" in r.json()["error"]


def _binary(x: np.ndarray, declared: int | None = None, extra: bytes = b"") -> tuple[bytes, int]:
    raw = x.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": declared or len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw + extra, len(header)


@pytest.mark.parametrize(
    ("declared", "extra", "message"),
    [
        (40, b"", "expected 40 bytes"),  # declares more than it sends
        (8, b"", "expected 32 bytes, got 8"),  # declares less than the shape needs
        (None, b"junk", "expected 32 bytes, got 36"),  # trailing bytes
    ],
)
def test_binary_sizes_are_checked(
    client: httpx.Client, declared: int | None, extra: bytes, message: str
) -> None:
    body, n = _binary(np.ones((2, 4), np.float32), declared, extra)
    r = client.post(
        "/v2/models/double/infer",
        content=body,
        headers={"inference-header-content-length": str(n)},
    )
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_nan_and_infinity_policy(client: httpx.Client) -> None:
    tensor = b'{"name":"x","datatype":"FP32","shape":[1,4],"data":[NaN,Infinity,-Infinity,1]}'
    body = b'{"inputs":[' + tensor + b"]}"
    r = client.post("/v2/models/double/infer", content=body)
    assert r.status_code == 200
    assert b"[NaN,Infinity,-Infinity,2.0]" in r.content.replace(b" ", b"")
    data = json.loads(r.content)["outputs"][0]["data"]  # Python's json reads the literals
    assert np.isnan(data[0]) and data[1] == float("inf")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 404),
        ("GET", "/v2/models", 404),
        ("GET", "/v2/models/double/infer", 405),
        ("PUT", "/v2/models/double/infer", 405),
        ("DELETE", "/v2/health/ready", 405),
        ("PATCH", "/v2", 405),
        ("OPTIONS", "/v2/models/double", 405),
        ("TRACE", "/v2/health/live", 405),
        ("POST", "/v2/repository/index", 404),  # only on the admin listener
        ("GET", "/v2/models/../../etc/passwd", 404),
        ("GET", "/v2/models/%2e%2e%2fetc", 404),
        ("GET", "/v2/models/double/versions/x!y", 400),
        ("GET", "/v2/models/double/versions/0", 400),
        ("GET", "/v2/models/double/versions/9", 404),
        ("GET", "/v2/models/nope/ready", 404),
        ("POST", "/v2/models/nope/infer", 404),
    ],
)
def test_any_route_any_method(client: httpx.Client, method: str, path: str, status: int) -> None:
    body = json.dumps(infer_body()) if method == "POST" else None
    r = client.request(method, path, content=body)
    assert r.status_code == status, r.text
    if method != "HEAD":
        assert "error" in r.json()


@pytest.mark.parametrize("path", ["/v2/models/nope/infer", "/v2/models/double/versions/9/infer"])
def test_unknown_model_is_404_even_with_a_bad_body(client: httpx.Client, path: str) -> None:
    r = client.post(path, content=b"{not json")
    assert r.status_code == 404, r.text
    assert client.post("/v2/models/double/infer", content=b"{not json").status_code == 400


def test_head_and_request_ids(client: httpx.Client) -> None:
    r = client.head("/v2/health/ready")
    assert r.status_code == 200 and r.content == b""
    r = client.get("/v2/health/live", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/v2/health/live", headers={b"x-request-id": "bad id\u00e9".encode("latin-1")})
    assert len(r.headers["x-request-id"]) == 16  # replaced by one of ours
    r = client.get("/v2/health/live")
    assert len(r.headers["x-request-id"]) == 16


def test_body_limit_by_length_and_while_streaming(client: httpx.Client) -> None:
    r = client.post("/v2/models/double/infer", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB in total, chunked: no Content-Length
            yield b" " * 65536

    r = client.post("/v2/models/double/infer", content=chunks())
    assert r.status_code == 413


def test_gzip_bodies(client: httpx.Client) -> None:
    body = gzip.compress(json.dumps(infer_body()).encode())
    r = client.post("/v2/models/double/infer", content=body, headers={"content-encoding": "gzip"})
    assert r.status_code == 200
    bomb = gzip.compress(b" " * (LIMIT * 4))
    r = client.post("/v2/models/double/infer", content=bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413
    r = client.post("/v2/models/double/infer", content=b"x", headers={"content-encoding": "br"})
    assert r.status_code == 415


def test_errors_carry_no_internals(client: httpx.Client, gw: InProcessGateway) -> None:
    gw.behavior.poison = 3.0
    r = client.post("/v2/models/double/infer", json=infer_body())
    assert r.status_code == 400 and "poisoned" in r.json()["error"]
    for text in (r.text, client.get("/v2/models/nope").text):
        assert "Traceback" not in text and "/secret" not in text and "store" not in text


def test_queue_full_is_503_with_retry_after(client: httpx.Client, gw: InProcessGateway) -> None:
    gate = threading.Event()
    gw.behavior.gate, gw.behavior.gated = gate, {"small_queue"}
    url = f"{gw.http_url}/v2/models/small_queue/infer"
    body = json.dumps(infer_body()).encode()
    kwargs = {"content": body, "timeout": 30}
    waiting = [threading.Thread(target=httpx.post, args=(url,), kwargs=kwargs) for _ in range(2)]
    try:
        for t in waiting:  # one runs (blocked), one waits in the queue of size 1
            t.start()
            time.sleep(0.2)
        r = client.post("/v2/models/small_queue/infer", content=body)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "overloaded" in r.json()["error"]
        assert_alive(gw)  # a saturated model does not starve the others
    finally:
        gate.set()
        for t in waiting:
            t.join(30)


def test_deadlines(client: httpx.Client, gw: InProcessGateway) -> None:
    r = client.post(
        "/v2/models/double/infer", json=infer_body(), headers={"x-request-timeout": "0"}
    )
    assert r.status_code == 504
    gw.behavior.gate = threading.Event()
    try:
        r = client.post(
            "/v2/models/double/infer", json=infer_body(), headers={"x-request-timeout": "0.2"}
        )
        assert r.status_code == 504 and "deadline" in r.json()["error"]
        body = infer_body()
        body["parameters"] = {"timeout": 200_000}  # Triton's, in microseconds
        r = client.post("/v2/models/double/infer", json=body)
        assert r.status_code == 504
    finally:
        gw.behavior.gate.set()
    r = client.post(
        "/v2/models/double/infer", json=infer_body(), headers={"x-request-timeout": "x"}
    )
    assert r.status_code == 400


def test_disconnected_client_is_never_executed(client: httpx.Client, gw: InProcessGateway) -> None:
    gate = threading.Event()
    gw.behavior.gate = gate
    body = json.dumps(infer_body(list(range(100, 108)))).encode()
    first = threading.Thread(
        target=httpx.post,
        args=(f"{gw.http_url}/v2/models/double/infer",),
        kwargs={"content": json.dumps(infer_body()).encode(), "timeout": 30},
    )
    first.start()
    time.sleep(0.2)  # the first request occupies the only instance
    with socket.create_connection(("127.0.0.1", gw.ports["http"])) as sock:
        sock.sendall(
            b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.2)  # queued behind the first
    time.sleep(0.2)  # the server notices the closed connection and cancels the request
    gate.set()
    first.join(30)
    assert_alive(gw)
    assert 0.0 in gw.behavior.firsts and 100.0 not in gw.behavior.firsts
    r = client.get("/metrics")
    assert 'code="CANCELLED"' in r.text


def test_metrics_endpoint(client: httpx.Client) -> None:
    client.post("/v2/models/double/infer", json=infer_body())
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'truce_requests_total{code="OK",model="double",protocol="rest",version="1"}' in r.text
    assert "truce_queue_depth" in r.text and "truce_compute_duration_seconds" in r.text


def test_admin_listener(gw: InProcessGateway, tmp_path: Path) -> None:
    url = gw.admin_url
    assert httpx.post(f"{url}/v2/repository/index").status_code == 401
    bad = {"authorization": "Bearer nope"}
    assert httpx.post(f"{url}/v2/repository/index", headers=bad).status_code == 401
    auth = {"authorization": f"Bearer {gw.token}"}
    rows = httpx.post(f"{url}/v2/repository/index", headers=auth).json()
    assert {"name": "double", "version": "1", "state": "READY", "reason": ""} in rows
    r = httpx.post(f"{url}/v2/repository/models/double/unload", headers=auth, timeout=30)
    assert r.status_code == 200
    assert httpx.get(f"{gw.http_url}/v2/models/double/ready").status_code == 404
    r = httpx.post(f"{url}/v2/repository/models/double/load", headers=auth, timeout=30)
    assert r.status_code == 200
    assert httpx.get(f"{gw.http_url}/v2/models/double/ready").status_code == 200
    r = httpx.post(f"{url}/v2/repository/models/nope/load", headers=auth)
    assert r.status_code == 404
    r = httpx.post(f"{url}/v2/repository/models/..%2Fx/load", headers=auth)
    assert r.status_code in (400, 404)
    alias = f"{url}/v2/repository/models/double/aliases/stable"
    r = httpx.put(alias, headers=auth, json={"version": 1, "weight": None}, timeout=30)
    assert r.status_code == 200
    assert httpx.get(f"{gw.http_url}/v2/models/double/versions/stable/ready").status_code == 200
    assert httpx.put(alias, headers=auth, json={"version": 7}).status_code == 404
    assert httpx.put(alias, headers=auth, json={"version": "1"}).status_code == 400
    r = httpx.get(f"{url}/v2/repository/models/double/aliases", headers=auth)
    assert r.json() == {"stable": {"version": 1, "weight": None}}
    assert httpx.delete(alias, headers=auth, timeout=30).status_code == 200
    assert httpx.get(f"{gw.http_url}/v2/models/double/versions/stable").status_code == 404


def test_stalled_body_gets_408(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    add_fake_version(store, "double")
    settings = {"request_timeout_s": 0.5, "max_request_timeout_s": 0.5}
    with (
        InProcessGateway(store.root, **settings) as gw,
        socket.create_connection(("127.0.0.1", gw.ports["http"])) as sock,
    ):
        sock.settimeout(30)
        sock.sendall(b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"Content-Length: 100\r\n\r\n" + b"{" * 10)  # ...and never the rest
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive in time" in reply
        assert_alive(gw)


def test_tritonclient_repository_calls(gw: InProcessGateway) -> None:
    admin = th.InferenceServerClient(gw.admin_url.removeprefix("http://"))
    auth = {"Authorization": f"Bearer {gw.token}"}
    index = admin.get_model_repository_index(headers=auth)
    assert {"name": "batched", "version": "1", "state": "READY", "reason": ""} in index
    admin.unload_model("batched", headers=auth)
    admin.load_model("batched", headers=auth)
    assert th.InferenceServerClient(gw.http).is_model_ready("batched")
    admin.close()


def test_hung_model_fails_its_request_and_is_reported_not_ready(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    add_fake_version(store, "double")
    add_fake_version(store, "hung")
    gate = threading.Event()
    behavior = Behavior(gate=gate, gated={"hung"})
    settings = {"request_timeout_s": 0.3, "max_request_timeout_s": 0.3}
    with InProcessGateway(store.root, behavior, **settings) as gw:
        try:
            r = httpx.post(f"{gw.http_url}/v2/models/hung/infer", json=infer_body(), timeout=30)
            assert r.status_code == 504
            ready = f"{gw.http_url}/v2/models/hung/ready"
            for _ in range(100):  # stuck for longer than the longest deadline: not ready
                if httpx.get(ready).status_code == 503:
                    break
                time.sleep(0.05)
            assert httpx.get(ready).json() == {"name": "hung", "ready": False}
            assert_alive(gw)
        finally:
            gate.set()
        for _ in range(100):  # it recovers once the stuck call returns
            if httpx.get(ready).status_code == 200:
                break
            time.sleep(0.05)
        assert httpx.get(ready).status_code == 200
