"""One contract for every protocol: the same request over REST and gRPC gives the same outputs,
and the same failure gives the same error code class, through the one table in
``gateway/status.py`` (HTTP status and gRPC status of one ``ErrorCode``).

Real models (``truce serve`` in a child process) for outputs and request errors; the
in-process gateway with fake runtimes for what needs a slow or busy model (deadlines, a
full queue, a model that refuses its input).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from gateway.protocols.oip.generated import grpc_service_pb2 as pb
from gateway.protocols.oip.generated import grpc_service_pb2_grpc as pb_grpc
from gateway.status import grpc_status, http_status
from tests.gateway.conftest import E2E_KEYS, GatewayProcess, InProcessGateway, zoo_store
from tests.gateway.fakes import Behavior, add_fake_version, fake_store
from tests.gateway.runtimes.test_conformance import CASES
from truce.errors import ErrorCode

th = pytest.importorskip("tritonclient.http")
tg = pytest.importorskip("tritonclient.grpc")

__all__ = ["zoo_store"]  # the session fixture, shared with tests/gateway
CASE = {c.key: c for c in CASES}
LIMIT = 4 << 20  # both the HTTP body limit and the gRPC message limit of the server
MODELS = ("onnx_mlp", "keras_mlp", "torchscript_mlp")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Tensor:
    """One input as a client would send it; ``raw`` overrides the bytes (size errors)."""

    name: str
    datatype: str
    shape: list[int]
    values: list[Any]
    raw: bytes | None = None

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape,
                "data": self.values}  # fmt: skip

    def typed(self, msg: pb.ModelInferRequest) -> None:
        field = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents"}
        t = msg.inputs.add(name=self.name, datatype=self.datatype, shape=self.shape)
        getattr(t.contents, field.get(self.datatype, "fp32_contents")).extend(self.values)


@dataclass(frozen=True)
class Call:
    """One request, expressed for both protocols."""

    model: str
    version: str = ""
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[str, ...] = ()
    parameters: tuple[tuple[str, int], ...] = ()
    binary: bool = False  # REST binary extension / gRPC raw contents
    timeout_s: float | None = None

    def rest(self, base: str) -> httpx.Response:
        path = f"/v2/models/{self.model}" + (f"/versions/{self.version}" if self.version else "")
        body: dict[str, Any] = {"inputs": [], "parameters": dict(self.parameters)}
        if self.outputs:
            body["outputs"] = [{"name": o} for o in self.outputs]
        headers = {"content-type": "application/json"}
        if self.timeout_s is not None:
            headers["x-request-timeout"] = str(self.timeout_s)
        blobs = []
        for t in self.inputs:
            if self.binary:
                blob = t.raw if t.raw is not None else _le(t)
                entry = {k: v for k, v in t.json().items() if k != "data"}
                body["inputs"].append({**entry, "parameters": {"binary_data_size": len(blob)}})
                blobs.append(blob)
            else:
                body["inputs"].append(t.json())
        head = json.dumps(body).encode()
        if self.binary:
            headers["inference-header-content-length"] = str(len(head))
            headers["content-type"] = "application/octet-stream"
        return httpx.post(
            f"{base}{path}/infer", content=head + b"".join(blobs), headers=headers, timeout=60
        )

    def grpc(self, stub: pb_grpc.GRPCInferenceServiceStub) -> pb.ModelInferResponse:
        msg = pb.ModelInferRequest(model_name=self.model, model_version=self.version)
        for key, value in self.parameters:
            msg.parameters[key].int64_param = value
        for name in self.outputs:
            msg.outputs.add(name=name)
        for t in self.inputs:
            if self.binary:
                msg.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
                msg.raw_input_contents.append(t.raw if t.raw is not None else _le(t))
            else:
                t.typed(msg)
        response: pb.ModelInferResponse = stub.ModelInfer(msg, timeout=self.timeout_s or 60)
        return response


def _le(t: Tensor) -> bytes:
    dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8"}.get(t.datatype, "<f4")
    return np.asarray(t.values, dtype=dtype).tobytes()


def x64(n: int = 64, datatype: str = "FP32", name: str = "input", **kw: Any) -> Tensor:
    values: list[Any] = [0.5] * n if datatype != "INT64" else [1] * n
    return Tensor(name, datatype, [1, n], values, **kw)


def assert_same_failure(
    code: ErrorCode, rest: httpx.Response, stub: Any, call: Callable[[Any], Any]
) -> tuple[str, str]:
    """Both protocols answer ``code``'s HTTP and gRPC status; their two messages."""
    assert rest.status_code == http_status(code), rest.text
    with pytest.raises(grpc.RpcError) as err:
        call(stub)
    assert err.value.code() == grpc_status(code), err.value.details()
    message = rest.json()["error"]
    assert message and err.value.details()
    return message, err.value.details()


# --- real models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(zoo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    for modules in E2E_KEYS.values():
        for module in modules:
            pytest.importorskip(module)
    env = {"TRUCE_MAX_REQUEST_BYTES": str(LIMIT), "TRUCE_GRPC_MAX_MESSAGE_BYTES": str(LIMIT)}
    with GatewayProcess(zoo_store, tmp_path_factory.mktemp("contract"), env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def stub(gateway: GatewayProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(gateway.grpc) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize("model", MODELS)
def test_same_outputs_over_every_protocol(gateway: GatewayProcess, model: str) -> None:
    case = CASE[model]
    spec_in, spec_out = case.signature.inputs[0], case.signature.outputs[0]
    x = np.random.default_rng(5).standard_normal((2, 64)).astype(np.float32)
    got: dict[str, np.ndarray] = {}
    http = th.InferenceServerClient(gateway.http, network_timeout=60)
    for binary in (False, True):
        inp = th.InferInput(spec_in.name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = th.InferRequestedOutput(spec_out.name, binary_data=binary)
        got[f"rest-{binary}"] = http.infer(model, [inp], outputs=[out]).as_numpy(spec_out.name)
    with tg.InferenceServerClient(gateway.grpc) as client:
        inp = tg.InferInput(spec_in.name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got["grpc-raw"] = client.infer(model, [inp]).as_numpy(spec_out.name)
    with grpc.insecure_channel(gateway.grpc) as channel:
        typed = Call(model, inputs=(Tensor(spec_in.name, "FP32", [2, 64], x.ravel().tolist()),))
        resp = typed.grpc(pb_grpc.GRPCInferenceServiceStub(channel))
        got["grpc-typed"] = np.array(resp.outputs[0].contents.fp32_contents, np.float32).reshape(
            list(resp.outputs[0].shape)
        )
    (want,) = case.reference({spec_in.name: x})
    for how, arr in got.items():
        assert arr.dtype == np.float32 and arr.shape == want.shape, how
        np.testing.assert_allclose(arr, got["grpc-raw"], rtol=1e-6, atol=1e-7, err_msg=how)
        np.testing.assert_allclose(arr, want, rtol=1e-5, atol=max(case.atol, 1e-6), err_msg=how)


BAD = "onnx_mlp"  # input 'input' FP32 [-1, 64], output 'output'
#: (id, code, call, same message on both protocols: the error comes from past the decoders)
FAILURES: list[tuple[str, ErrorCode, Call, bool]] = [
    ("unknown-model", ErrorCode.NOT_FOUND, Call("nope", inputs=(x64(),)), True),
    ("unknown-version", ErrorCode.NOT_FOUND, Call(BAD, "9", inputs=(x64(),)), True),
    ("malformed-version", ErrorCode.INVALID_ARGUMENT, Call(BAD, "v!", inputs=(x64(),)), True),
    ("wrong-dtype", ErrorCode.INVALID_ARGUMENT, Call(BAD, inputs=(x64(datatype="INT64"),)), True),
    ("wrong-shape", ErrorCode.INVALID_ARGUMENT, Call(BAD, inputs=(x64(63),)), True),
    ("missing-input", ErrorCode.INVALID_ARGUMENT, Call(BAD), False),
    (
        "extra-input",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(x64(), x64(name="z"))),
        True,
    ),
    (
        "unknown-output",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(x64(),), outputs=("nope",)),
        True,
    ),
    ("duplicate-input", ErrorCode.INVALID_ARGUMENT, Call(BAD, inputs=(x64(), x64())), False),
    (
        "unknown-datatype",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(Tensor("input", "FP8", [1, 1], [1.0]),), binary=True),
        False,
    ),
    (
        "negative-shape",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(Tensor("input", "FP32", [-1, 64], [0.5] * 64),)),
        False,
    ),
    (
        "overflowing-shape",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(Tensor("input", "FP32", [2**62, 2**62], [0.5] * 64),), binary=True),
        False,
    ),
    (
        "count-mismatch",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(Tensor("input", "FP32", [1, 64], [0.5] * 63),)),
        False,
    ),
    (
        "binary-size-mismatch",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(x64(raw=b"\0" * 255),), binary=True),
        False,
    ),
    (
        "bad-timeout-parameter",
        ErrorCode.INVALID_ARGUMENT,
        Call(BAD, inputs=(x64(),), parameters=(("timeout", -5),)),
        True,
    ),
    (
        "oversized",
        ErrorCode.PAYLOAD_TOO_LARGE,
        Call(
            BAD,
            inputs=(Tensor("input", "FP32", [LIMIT // 256 + 1, 64], [], b"\0" * (LIMIT + 256)),),
            binary=True,
        ),
        False,
    ),
]


@pytest.mark.parametrize(
    ("code", "call", "same_message"),
    [f[1:] for f in FAILURES],
    ids=[f[0] for f in FAILURES],
)
def test_same_error_code_for_the_same_failure(
    gateway: GatewayProcess, stub: Any, code: ErrorCode, call: Call, same_message: bool
) -> None:
    rest_message, grpc_message = assert_same_failure(
        code, call.rest(gateway.http_url), stub, call.grpc
    )
    if same_message:
        assert rest_message == grpc_message
    assert "Traceback" not in rest_message + grpc_message
    assert httpx.get(f"{gateway.http_url}/v2/health/live", timeout=10).status_code == 200


def test_same_answers_for_metadata_and_readiness(gateway: GatewayProcess, stub: Any) -> None:
    base = gateway.http_url
    cases = [
        ("nope", "", ErrorCode.NOT_FOUND),
        (BAD, "9", ErrorCode.NOT_FOUND),
        (BAD, "v!", ErrorCode.INVALID_ARGUMENT),
    ]
    for model, version, code in cases:
        path = f"{base}/v2/models/{model}" + (f"/versions/{version}" if version else "")
        meta = pb.ModelMetadataRequest(name=model, version=version)
        ready = pb.ModelReadyRequest(name=model, version=version)
        rest_messages = assert_same_failure(
            code,
            httpx.get(path, timeout=10),
            stub,
            lambda s, m=meta: s.ModelMetadata(m, timeout=10),
        )
        assert rest_messages[0] == rest_messages[1]
        assert_same_failure(
            code,
            httpx.get(path + "/ready", timeout=10),
            stub,
            lambda s, r=ready: s.ModelReady(r, timeout=10),
        )
    meta = httpx.get(f"{base}/v2/models/{BAD}", timeout=10).json()
    resp = stub.ModelMetadata(pb.ModelMetadataRequest(name=BAD), timeout=10)
    assert meta["name"] == resp.name and meta["versions"] == list(resp.versions)
    assert meta["platform"] == resp.platform
    assert meta["inputs"] == [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                              for t in resp.inputs]  # fmt: skip
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    server = httpx.get(f"{base}/v2", timeout=10).json()
    grpc_server = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
    assert server["name"] == grpc_server.name and server["version"] == grpc_server.version
    assert server["extensions"] == list(grpc_server.extensions)


# --- slow, busy and refusing models: the in-process gateway with fake runtimes ------------


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    store = fake_store(tmp_path_factory.mktemp("contract-fake"))  # "double": y = 2x, [-1, 4]
    add_fake_version(store, "busy", max_queue_size=1)
    with InProcessGateway(store.root, Behavior(poison=13.0)) as gw:
        yield gw


@pytest.fixture(scope="module")
def fake_stub(fake: InProcessGateway) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(fake.grpc) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def x4(value: float) -> Tensor:
    return Tensor("x", "FP32", [1, 4], [value] * 4)


def test_model_refusing_its_input(fake: InProcessGateway, fake_stub: Any) -> None:
    call = Call("double", inputs=(x4(13.0),))
    messages = assert_same_failure(
        ErrorCode.INVALID_ARGUMENT, call.rest(fake.http_url), fake_stub, call.grpc
    )
    assert messages[0] == messages[1]


def test_deadline_exceeded(fake: InProcessGateway, fake_stub: Any) -> None:
    fake.behavior.delay_s = 0.5
    try:
        call = Call("double", inputs=(x4(1.0),), timeout_s=0.1)
        assert_same_failure(
            ErrorCode.DEADLINE_EXCEEDED, call.rest(fake.http_url), fake_stub, call.grpc
        )
    finally:
        fake.behavior.delay_s = 0.0
    ok = Call("double", inputs=(x4(1.0),), timeout_s=30).grpc(fake_stub)
    assert list(ok.outputs[0].contents.fp32_contents) == [2.0] * 4


def test_full_queue_is_unavailable(fake: InProcessGateway, fake_stub: Any) -> None:
    behavior = fake.behavior
    behavior.gate, behavior.gated = threading.Event(), {"busy"}
    held = Call("busy", inputs=(x4(1.0),), timeout_s=30)
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(held.rest, fake.http_url)  # in the model
            end = time.monotonic() + 10
            while 1.0 not in behavior.firsts and time.monotonic() < end:
                time.sleep(0.01)
            queued = pool.submit(held.grpc, fake_stub)  # fills the one queue slot
            time.sleep(0.2)
            call = Call("busy", inputs=(x4(2.0),), timeout_s=30)
            assert_same_failure(
                ErrorCode.UNAVAILABLE, call.rest(fake.http_url), fake_stub, call.grpc
            )
            behavior.gate.set()
            assert running.result(30).status_code == 200
            assert list(queued.result(30).outputs[0].contents.fp32_contents) == [2.0] * 4
    finally:
        behavior.gate.set()
        behavior.gate = None
    assert 2.0 not in behavior.firsts
