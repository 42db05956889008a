"""The ``remote`` runtime: URL parsing, the allowlist, error mapping, registration, and a front
gateway forwarding to a second Truce instance over every protocol and transport it speaks
(OIP v2, TF Serving and TorchServe; REST and gRPC). Real TorchServe and a TF Serving
servicer running a SavedModel are in ``test_remote_peers.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from gateway.runtimes.remote_errors import grpc_error, http_error
from gateway.runtimes.remote_target import RemoteConfig, parse_target, url_allowed
from loadtests.bench.procs import free_port
from model_store.remote import RemoteOptions, register_remote
from model_store.signature import Signature, TensorSpec
from model_store.store import ModelStore
from tests.gateway.conftest import InProcessGateway
from tests.gateway.fakes import add_fake_version
from truce.cli import main
from truce.errors import ErrorCode, InvalidArgument, TruceError

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 4])


class FrontGateway(InProcessGateway):
    """An in-process gateway with the real runtimes (the remote one included)."""

    def __init__(self, store: Path, **settings: Any) -> None:
        super().__init__(store, **settings)
        from gateway.server import GatewayServer

        self.server = GatewayServer(self.settings)


def infer(gw: InProcessGateway, model: str, rows: list[list[float]]) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(rows), 4],
                        "data": [v for r in rows for v in r]}]}  # fmt: skip
    return httpx.post(f"{gw.http_url}/v2/models/{model}/infer", json=body, timeout=30)


# --- URLs and the allowlist ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://h:8000/v2/models/m", ("oip", "http", "m", None, False)),
        ("grpcs://h:8001/v2/models/m/versions/3", ("oip", "grpc", "m", "3", False)),
        ("https://h/predictions/m/1.0", ("torchserve", "http", "m", "1.0", False)),
        ("grpc://h:7070/predictions/m", ("torchserve", "grpc", "m", None, False)),
        ("grpc://h:8500/v1/models/m/versions/2", ("tfserving", "grpc", "m", "2", False)),
        ("http://h:8501/v1/models/m/labels/stable", ("tfserving", "http", "m", "stable", True)),
    ],
)
def test_urls_name_protocol_transport_and_model(url: str, want: tuple[Any, ...]) -> None:
    t = parse_target(RemoteConfig(url=url))
    assert (t.protocol, t.transport, t.model, t.version, t.label) == want


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://h:1/v2/models/m", "scheme"),
        ("http://user:pw@h:1/v2/models/m", "user:password"),
        ("http://h:1/v2/models/m?x=1", "query"),
        ("grpc://h/v2/models/m", "port"),
        ("http://h:1/v2/models", "path must be"),
        ("http://h:1/v1/models/m/versions/abc", "path must be"),
        ("http://h:1/v2/models/../etc", "letters, digits"),
        ("http://h:1/predictions/m%2e", "letters, digits"),
    ],
)
def test_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_target(RemoteConfig(url=url))


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("http://a:80/v2/models/m", ["http://a:80"], True),
        ("http://a/v2/models/m", ["http://a:80/"], True),
        ("http://a:8080/v2/models/m", ["http://a:80"], False),
        ("http://a:80@evil:80/v2/models/m", ["http://a:80"], False),
        ("http://a.evil:80/v2/models/m", ["http://a"], False),
        ("https://a/v2/models/m", ["http://a"], False),
        ("http://a:1/v2/models/m", ["http://a:1/v2/models/m"], True),
        ("http://a:1/v2/models/mm", ["http://a:1/v2/models/m"], False),
        ("http://a:1/v2/models/m", [], False),
        ("grpc://a:1/v1/models/m", ["GRPC://A:1"], True),
    ],
)
def test_allowlist_is_by_scheme_host_port_and_path(url: str, allowed: list[str], ok: bool) -> None:
    assert url_allowed(url, allowed) is ok


# --- error mapping -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, b'{"error": "bad shape"}', ErrorCode.INVALID_ARGUMENT),
        (422, b"{}", ErrorCode.INVALID_ARGUMENT),
        (400, b'{"code": 400, "type": "InvalidKeyException", "message": "Token"}',
         ErrorCode.UNAVAILABLE),
        (404, b'{"code": 404, "message": "Model not found"}', ErrorCode.UNAVAILABLE),
        (429, b"", ErrorCode.UNAVAILABLE),
        (503, b"", ErrorCode.UNAVAILABLE),
        (504, b"", ErrorCode.DEADLINE_EXCEEDED),
        (500, b"<html>boom</html>", ErrorCode.INTERNAL),
    ],
)  # fmt: skip
def test_http_errors_map_to_codes(status: int, body: bytes, code: ErrorCode) -> None:
    err = http_error("the remote oip server at h:1", status, body, 5.0)
    assert err.code is code
    assert "h:1" in err.message and "\n" not in err.message


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversized_remote_answers_are_refused(
    monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    from gateway.runtimes import remote_http

    monkeypatch.setattr(remote_http, "MAX_MESSAGE", 1000)
    big = b"[" + b"0," * 1000 + b"0]"

    def handler(request: httpx.Request) -> httpx.Response:
        body = big if declared else iter([big[:500], big[500:]])
        return httpx.Response(200, content=body)

    client = remote_http.HttpClient(parse_target(RemoteConfig(url="http://h:1/v2/models/m")))
    client._client = httpx.Client(base_url="http://h:1", transport=httpx.MockTransport(handler))
    with pytest.raises(TruceError, match="larger than") as info:
        client.call("POST", "/v2/models/m/infer", b"{}")
    assert info.value.code is ErrorCode.INTERNAL
    small = httpx.MockTransport(lambda r: httpx.Response(200, content=b"[1]"))
    client._client = httpx.Client(base_url="http://h:1", transport=small)
    assert client.call("GET", "/v2/models/m") == b"[1]"


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, ErrorCode.INVALID_ARGUMENT),
        (grpc.StatusCode.UNAVAILABLE, ErrorCode.UNAVAILABLE),
        (grpc.StatusCode.PERMISSION_DENIED, ErrorCode.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorCode.DEADLINE_EXCEEDED),
        (grpc.StatusCode.INTERNAL, ErrorCode.INTERNAL),
    ],
)
def test_grpc_errors_map_to_codes(status: grpc.StatusCode, code: ErrorCode) -> None:
    err = grpc_error("the remote tfserving server at h:1", _RpcError(status, "why /srv/x/y"), 5.0)
    assert err.code is code and "/srv/x" not in err.message


# --- a front gateway in front of a second Truce instance ------------------------------------
@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    root = tmp_path_factory.mktemp("remote") / "store"
    add_fake_version(ModelStore(root), "double")
    with InProcessGateway(root) as gw:
        yield gw


KINDS = {
    "oip_rest": "http://{http}/v2/models/double",
    "oip_grpc": "grpc://{grpc}/v2/models/double/versions/1",
    "tfs_rest": "http://{http}/v1/models/double",
    "tfs_grpc": "grpc://{grpc}/v1/models/double/versions/1",
    "ts_rest": "http://{http}/predictions/double",
    "ts_grpc": "grpc://{grpc}/predictions/double/1",
}


@pytest.fixture(scope="module")
def front(
    remote: InProcessGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FrontGateway]:
    root = tmp_path_factory.mktemp("front") / "store"
    store = ModelStore(root)
    for name, url in KINDS.items():
        inputs = [X] if name.startswith("ts_") else []  # TorchServe has no tensor metadata
        register_remote(store, RemoteOptions(name=name, url=url.format(**_addr(remote)),
                                             inputs=inputs))  # fmt: skip
    ts_url = KINDS["ts_rest"].format(**_addr(remote))
    register_remote(store, RemoteOptions(name="ts_npy", url=ts_url, inputs=[X], body="npy"))
    register_remote(store, RemoteOptions(
        name="short", url=KINDS["oip_rest"].format(**_addr(remote)), timeout_s=0.3))  # fmt: skip
    closed = free_port()  # nothing listens there
    _write_remote(store, "down", f"http://127.0.0.1:{closed}/v2/models/double")
    _write_remote(store, "denied", "http://10.255.255.1:9/v2/models/double")
    _write_remote(
        store, "tokened", KINDS["oip_rest"].format(**_addr(remote)), token_env="TRUCE_T_NO"
    )
    allowed = [f"http://{remote.http}", f"grpc://{remote.grpc}", f"http://127.0.0.1:{closed}"]
    with FrontGateway(root, allowed_remote_urls=allowed) as gw:
        yield gw


def _addr(gw: InProcessGateway) -> dict[str, str]:
    return {"http": gw.http, "grpc": gw.grpc}


def _write_remote(store: ModelStore, name: str, url: str, token_env: str | None = None) -> None:
    """A remote version written directly (registration would probe the remote)."""
    config = RemoteConfig(url=url, token_env=token_env)
    path = store.root.parent / f"{name}-remote.json"
    path.write_text(config.model_dump_json())
    sig = Signature(inputs=[X], outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 4])])
    store.add_version(name, path, format="remote", signature=sig, remote=config.model_dump())


def test_registration_reads_the_remote_signature(front: FrontGateway) -> None:
    store = ModelStore(front.settings.store)  # type: ignore[arg-type]
    for name in KINDS:
        m = store.manifest(name, 1)
        assert m.format == "remote" and m.framework == "remote" and m.serving.instances == 4
        assert m.signature.inputs == [X]
        out = m.signature.outputs[0]
        assert (out.datatype, out.shape) == ("FP32", [-1, 4])
        assert out.name == ("output__0" if name.startswith("ts_") else "y")
        assert (
            json.loads((store.version_dir(name, 1) / "remote.json").read_text())["url"]
            == (m.remote or {})["url"]
        )


@pytest.mark.parametrize("name", [*KINDS, "ts_npy"])
def test_every_protocol_forwards_through_oip(front: FrontGateway, name: str) -> None:
    r = infer(front, name, [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2, 4, 6, 8, 10, 12, 14, 16]


@pytest.mark.parametrize("name", [*KINDS, "ts_npy"])
def test_remote_bad_input_is_a_400_with_the_remote_message(
    front: FrontGateway, remote: InProcessGateway, name: str
) -> None:
    remote.behavior.poison = 7.0
    try:
        r = infer(front, name, [[1, 2, 3, 7]])
    finally:
        remote.behavior.poison = None
    assert r.status_code == 400, r.text
    assert "refused the request" in r.json()["error"] and "poisoned value" in r.json()["error"]


def test_remote_timeout_is_504(front: FrontGateway, remote: InProcessGateway) -> None:
    remote.behavior.delay_s = 1.5
    try:
        r = infer(front, "short", [[1, 2, 3, 4]])
    finally:
        remote.behavior.delay_s = 0.0
    assert r.status_code == 504 and "did not answer within 0.3 s" in r.json()["error"]


def test_unreachable_remote_is_503(front: FrontGateway) -> None:
    r = infer(front, "down", [[1, 2, 3, 4]])
    assert r.status_code == 503 and "unreachable" in r.json()["error"]
    assert r.headers.get("retry-after")


def test_deny_by_default_and_missing_token_fail_the_version(front: FrontGateway) -> None:
    r = infer(front, "denied", [[1, 2, 3, 4]])
    assert r.status_code == 400 and "allowed_remote_urls" in r.json()["error"]
    r = infer(front, "tokened", [[1, 2, 3, 4]])
    assert r.status_code == 400 and "TRUCE_T_NO" in r.json()["error"]
    index = httpx.post(f"{front.admin_url}/v2/repository/index", timeout=30,
                       headers={"authorization": f"Bearer {front.token}"}).json()  # fmt: skip
    states = {row["name"]: row["state"] for row in index}
    assert states["denied"] == "FAILED" and states["oip_rest"] == "READY"


def test_front_speaks_every_dialect_for_a_remote_model(front: FrontGateway) -> None:
    r = httpx.post(f"{front.http_url}/predictions/tfs_grpc", json=[[1, 1, 1, 1]], timeout=30)
    assert r.json() == [[2, 2, 2, 2]]
    r = httpx.post(f"{front.http_url}/v1/models/ts_rest:predict",
                   json={"instances": [[1, 1, 1, 1]]}, timeout=30)  # fmt: skip
    assert r.json() == {"predictions": [[2, 2, 2, 2]]}


# --- registration errors and the CLI --------------------------------------------------------
def test_register_remote_errors(tmp_path: Path, remote: InProcessGateway) -> None:
    store = ModelStore(tmp_path / "store")
    url = f"http://{remote.http}/predictions/double"
    with pytest.raises(InvalidArgument, match="pass --input"):
        register_remote(store, RemoteOptions(name="m", url=url))
    with pytest.raises(InvalidArgument, match="test inference"):
        bad = TensorSpec(name="x", datatype="FP32", shape=[-1, 3])
        register_remote(store, RemoteOptions(name="m", url=url, inputs=[bad]))
    with pytest.raises(InvalidArgument, match="bad remote URL"):
        register_remote(store, RemoteOptions(name="m", url="http://h:1/nothing"))
    with pytest.raises(InvalidArgument, match="timeout_s"):
        register_remote(store, RemoteOptions(name="m", url=url, timeout_s=0))
    assert store.model_names() == []  # nothing written by a failed registration


def test_cli_register_remote(
    tmp_path: Path, remote: InProcessGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    s = ["--store", str(tmp_path / "store")]
    url = f"grpc://{remote.grpc}/v1/models/double"
    assert main(["models", "register", "--remote", url, "--name", "r", "--json", *s]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "remote" and doc["remote"]["url"] == url
    assert doc["signature"]["inputs"][0]["name"] == "x"
    code = main(["models", "register", "--name", "r", *s])
    assert code != 0 and "--remote URL" in capsys.readouterr().err
    code = main(["models", "register", "x.onnx", "--remote", url, "--name", "r", *s])
    assert code != 0
