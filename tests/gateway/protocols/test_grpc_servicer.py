"""The gRPC adapter in process: a real grpc.aio server with a fake DataPlane, real clients.

The server runs on its own event loop in a thread, so the blocking clients (tritonclient,
grpc stubs) can be used as they are. End-to-end tests against ``truce serve`` with real
models are in ``test_grpc_e2e.py``; these pin the plumbing: status codes, deadlines, sizes,
health and reflection.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from gateway.protocols.oip.generated import grpc_service_pb2 as pb
from gateway.protocols.oip.generated import grpc_service_pb2_grpc as pb_grpc
from gateway.protocols.oip.grpc import add_to_server, grpc_server_options
from gateway.status import grpc_status
from gateway.types import InferRequest, InferResponse, ModelMetadata, ServerMetadata
from model_store.signature import TensorSpec, check_inputs
from truce.errors import ErrorCode, NotFound, TruceError, Unavailable

tc = pytest.importorskip("tritonclient.grpc")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.utils import InferenceServerException  # noqa: E402

LIMIT = 1 << 20

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 4])
Y = TensorSpec(name="y", datatype="FP32", shape=[-1, 4])
S = TensorSpec(name="s", datatype="BYTES", shape=[-1])
H = TensorSpec(name="h", datatype="FP16", shape=[-1])
B = TensorSpec(name="left", datatype="FP64", shape=[1])
MODELS: dict[str, tuple[list[TensorSpec], list[TensorSpec]]] = {
    "double": ([X], [Y]),
    "echo_bytes": ([S], [S]),
    "half": ([H], [H]),
    "budget": ([X], [B]),
    "slow": ([X], [Y]),
    "boom": ([X], [Y]),
    "full": ([X], [Y]),
}


@dataclass
class FakeSettings:
    grpc_max_message_bytes: int = LIMIT
    request_timeout_s: float = 2.0
    max_request_timeout_s: float = 5.0
    max_tensor_elements: int = 1 << 20


class FakeDataPlane:
    """Behaves like the real DataPlane at its interface: validates, then 'runs' the model."""

    def __init__(self) -> None:
        self.is_ready = True
        self.calls: list[InferRequest] = []

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="truce", version="0.1.0", extensions=["model_repository"])

    def _specs(self, name: str, version: str | None) -> tuple[list[TensorSpec], list[TensorSpec]]:
        if name not in MODELS or version not in (None, "1"):
            raise NotFound(f"model {name!r} version {version} is not served")
        return MODELS[name]

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self._specs(name, version)
        return True

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        inputs, outputs = self._specs(name, version)
        return ModelMetadata(name, ["1"], "fake", inputs, outputs)

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        inputs, outputs = self._specs(name, version)
        check_inputs(inputs, request.inputs)
        self.calls.append(request)
        assert request.deadline is not None
        if name == "boom":
            raise RuntimeError("/secret/path/model.pt exploded")
        if name == "full":
            raise Unavailable("model 'full' is overloaded: retry later")
        if name == "slow":
            await asyncio.sleep(max(0.0, request.deadline - time.monotonic()))
            raise TruceError("the model did not answer in time", ErrorCode.DEADLINE_EXCEEDED)
        if name == "budget":
            left = request.deadline - time.monotonic()
            result = {"left": np.array([left])}
        elif name == "double":
            result = {"y": request.inputs["x"] * 2}
        else:
            result = {outputs[0].name: request.inputs[inputs[0].name]}
        return InferResponse(name, "1", result, outputs, id=request.id)


class ServerThread:
    def __init__(self, dataplane: FakeDataPlane, settings: FakeSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.dataplane, self.settings = dataplane, settings
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def _start(self) -> int:
        self.server = grpc.aio.server(options=grpc_server_options(self.settings))
        add_to_server(self.server, self.dataplane, self.settings)
        port: int = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(FakeDataPlane(), FakeSettings()) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> Iterator[tc.InferenceServerClient]:
    server.dataplane.is_ready = True
    cl = tc.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield cl
    cl.close()


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def _input(name: str, arr: np.ndarray, datatype: str) -> tc.InferInput:
    inp = tc.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


def _status(exc: InferenceServerException) -> str:
    return str(exc.status())


def _expect(code: ErrorCode) -> str:
    """The status the one table in gateway/status.py gives ``code``, as tritonclient prints it."""
    return str(grpc_status(code))


def test_health_and_metadata(client: tc.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "truce" and list(meta.extensions) == ["model_repository"]
    assert client.is_model_ready("double") and client.is_model_ready("double", "1")
    md = client.get_model_metadata("double")
    assert md.name == "double" and list(md.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("x", "FP32", [-1, 4])]


def test_infer_raw_numeric_bytes_fp16(client: tc.InferenceServerClient) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    res = client.infer("double", [_input("x", x, "FP32")], request_id="r1")
    np.testing.assert_array_equal(res.as_numpy("y"), x * 2)
    assert res.get_response().id == "r1" and res.get_response().model_version == "1"

    s = np.array([b"a", b"", "\u00e9".encode(), b"\x00" * 3], dtype=object)
    res = client.infer("echo_bytes", [_input("s", s, "BYTES")])
    assert res.as_numpy("s").tolist() == s.tolist()

    h = np.array([0.5, -2.0, 65504.0], dtype=np.float16)
    res = client.infer("half", [_input("h", h, "FP16")])
    np.testing.assert_array_equal(res.as_numpy("h"), h)


def test_infer_typed_contents(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    req = pb.ModelInferRequest(model_name="double", model_version="1")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(
        [1, 2, 3, 4]
    )
    resp = stub.ModelInfer(req, timeout=10)
    assert not resp.raw_output_contents
    assert list(resp.outputs[0].contents.fp32_contents) == [2, 4, 6, 8]
    assert list(resp.outputs[0].shape) == [1, 4] and resp.outputs[0].datatype == "FP32"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("x", np.zeros((1, 4), np.int64), "INT64")], "datatype INT64, expected FP32"),
        ([("x", np.zeros((1, 5), np.float32), "FP32")], "shape [1, 5], expected [-1, 4]"),
        ([], "missing input 'x'"),
        (
            [("x", np.zeros((1, 4), np.float32), "FP32"), ("z", np.zeros(1, np.float32), "FP32")],
            "unexpected input 'z'",
        ),
    ],
)
def test_bad_inputs_are_invalid_argument(
    client: tc.InferenceServerClient, inputs: list[tuple[str, np.ndarray, str]], message: str
) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("double", [_input(*i) for i in inputs])
    assert (
        _status(err.value) == _expect(ErrorCode.INVALID_ARGUMENT) == "StatusCode.INVALID_ARGUMENT"
    )
    assert message in err.value.message()
    assert client.infer("double", [_input("x", np.ones((1, 4), np.float32), "FP32")])


def test_raw_size_mismatch_names_bytes(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    req = pb.ModelInferRequest(model_name="double")
    req.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(b"\0" * 12)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 16 bytes, got 12" in err.value.details()
    req.inputs[0].shape[:] = [1 << 20, 4]  # over the server's max_tensor_elements
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1048576 elements per tensor" in err.value.details()


def test_oversized_message_is_resource_exhausted(client: tc.InferenceServerClient) -> None:
    big = np.zeros((LIMIT // 16 + 1, 4), np.float32)  # just over the 1 MiB limit
    with pytest.raises(InferenceServerException) as err:
        client.infer("double", [_input("x", big, "FP32")])
    assert _status(err.value) == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_live()


@pytest.mark.parametrize(
    ("model", "version", "code"),
    [
        ("nope", None, ErrorCode.NOT_FOUND),
        ("double", "7", ErrorCode.NOT_FOUND),
        ("full", None, ErrorCode.UNAVAILABLE),
        ("boom", None, ErrorCode.INTERNAL),
    ],
)
def test_errors_map_through_the_status_table(
    client: tc.InferenceServerClient, model: str, version: str | None, code: ErrorCode
) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer(model, [_input("x", np.ones((1, 4), np.float32), "FP32")], version or "")
    assert _status(err.value) == _expect(code)
    assert "UNKNOWN" not in _status(err.value)
    assert "/secret" not in err.value.message() and "Traceback" not in err.value.message()


def test_unknown_model_metadata_and_readiness(client: tc.InferenceServerClient) -> None:
    for call in (client.get_model_metadata, client.is_model_ready):
        with pytest.raises(InferenceServerException) as err:
            call("nope")
        assert _status(err.value) == "StatusCode.NOT_FOUND"


def test_empty_model_name_is_invalid(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(pb.ModelMetadataRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_is_the_client_deadline_capped_by_the_server(
    client: tc.InferenceServerClient, server: ServerThread
) -> None:
    x = [_input("x", np.ones((1, 4), np.float32), "FP32")]
    # shorter than the server default (2 s) wins; gRPC rounds the deadline it sends up a little
    left = float(client.infer("budget", x, client_timeout=1.0).as_numpy("left")[0])
    assert 0 < left < 1.5
    left = float(client.infer("budget", x, client_timeout=60.0).as_numpy("left")[0])
    assert server.settings.request_timeout_s < left <= server.settings.max_request_timeout_s
    left = float(client.infer("budget", x).as_numpy("left")[0])  # no client deadline
    assert 0 < left <= server.settings.request_timeout_s
    # Triton's parameters.timeout (microseconds) shortens it too
    left = float(client.infer("budget", x, timeout=500_000).as_numpy("left")[0])
    assert 0 < left <= 0.5
    with pytest.raises(InferenceServerException) as err:
        client.infer("budget", x, timeout=-1)
    assert _status(err.value) == "StatusCode.INVALID_ARGUMENT"


def test_deadline_exceeded(client: tc.InferenceServerClient) -> None:
    x = [_input("x", np.ones((1, 4), np.float32), "FP32")]
    with pytest.raises(InferenceServerException) as err:
        client.infer("slow", x, client_timeout=0.2)
    assert _status(err.value) == "StatusCode.DEADLINE_EXCEEDED"
    with pytest.raises(InferenceServerException) as err:  # the server's own maximum
        client.infer("slow", x)
    assert _status(err.value) == _expect(ErrorCode.DEADLINE_EXCEEDED)
    assert client.is_server_live()


def test_health_service_follows_readiness(channel: grpc.Channel, server: ServerThread) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", "inference.GRPCInferenceService"):
        req = health_pb2.HealthCheckRequest(service=service)
        assert health.Check(req, timeout=10).status == serving
    server.dataplane.is_ready = False
    status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    server.dataplane.is_ready = True
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stream = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(stream).status == serving
    stream.cancel()


def test_reflection_lists_and_describes_services(channel: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
    proto = db.FindFileContainingSymbol("inference.ModelInferRequest")
    assert proto.package == "inference"
    fields = {
        m.name: {f.name: f.number for f in m.field}
        for m in proto.message_type
        if m.name == "ModelInferRequest"
    }
    assert fields["ModelInferRequest"]["raw_input_contents"] == 7
