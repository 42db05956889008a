"""End to end over gRPC: ``truce serve`` in a child process, ``tritonclient.grpc`` against a model
of every served format from both frameworks, outputs compared with the framework itself.

Deadlines and disconnects need a model that can be slowed down: they use the in-process
gateway (the real server, dataplane and batcher) with fake runtimes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from gateway.protocols.oip.generated import grpc_service_pb2 as pb
from gateway.protocols.oip.generated import grpc_service_pb2_grpc as pb_grpc
from model_store.signature import example_inputs
from tests.gateway.conftest import E2E_KEYS, GatewayProcess, InProcessGateway
from tests.gateway.fakes import Behavior, add_fake_version, fake_store
from tests.gateway.runtimes.test_conformance import CASES

tc = pytest.importorskip("tritonclient.grpc")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.utils import InferenceServerException  # noqa: E402

CASE = {c.key: c for c in CASES}
LIMIT = 2 << 20  # the server's gRPC message limit in this module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(zoo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    for modules in E2E_KEYS.values():
        for module in modules:
            pytest.importorskip(module)
    env = {"TRUCE_GRPC_MAX_MESSAGE_BYTES": str(LIMIT)}
    with GatewayProcess(zoo_store, tmp_path_factory.mktemp("serve-grpc"), env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[Any]:
    cl = tc.InferenceServerClient(gateway.grpc)
    yield cl
    cl.close()


@pytest.fixture(scope="module")
def channel(gateway: GatewayProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.grpc) as ch:
        yield ch


def _input(name: str, arr: np.ndarray, datatype: str) -> Any:
    inp = tc.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


def _status(err: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(err.value.status())


def _mlp_input(batch: int = 1) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((batch, 64)).astype(np.float32)


@pytest.mark.parametrize("key", list(E2E_KEYS))
def test_outputs_equal_the_framework(client: Any, key: str) -> None:
    case = CASE[key]
    spec_in, spec_out = case.signature.inputs[0], case.signature.outputs[0]
    x = example_inputs(case.signature.inputs, batch=3, seed=11)[spec_in.name]
    result = client.infer(key, [_input(spec_in.name, x, spec_in.datatype)], client_timeout=120)
    got = result.as_numpy(spec_out.name)
    (want,) = case.reference({spec_in.name: x})
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=max(case.atol, 1e-6))
    assert result.get_response().model_version == "1"


@pytest.mark.parametrize("key", list(E2E_KEYS))
def test_metadata_and_readiness(client: Any, key: str) -> None:
    case = CASE[key]
    meta = client.get_model_metadata(key)
    assert meta.name == key and list(meta.versions) == ["1"]
    got = [(t.name, t.datatype, list(t.shape)) for t in meta.inputs]
    assert got == [(s.name, s.datatype, s.shape) for s in case.signature.inputs]
    got = [(t.name, t.datatype, list(t.shape)) for t in meta.outputs]
    assert got == [(s.name, s.datatype, s.shape) for s in case.signature.outputs]
    assert client.is_model_ready(key) and client.is_model_ready(key, "1")


def test_server_health_and_metadata(client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "truce" and meta.version


def test_typed_contents_and_requested_outputs(channel: grpc.Channel) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    x = _mlp_input(2)
    req = pb.ModelInferRequest(model_name="torchscript_mlp", model_version="1", id="t-1")
    tensor = req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    req.outputs.add(name="output")
    resp = stub.ModelInfer(req, timeout=60)
    assert resp.id == "t-1" and not resp.raw_output_contents
    out = resp.outputs[0]
    got = np.array(out.contents.fp32_contents, np.float32).reshape(list(out.shape))
    (want,) = CASE["torchscript_mlp"].reference({"input": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("input", np.zeros((1, 64), np.float64), "FP64")], "datatype FP64, expected FP32"),
        ([("input", np.zeros((1, 63), np.float32), "FP32")], "expected [-1, 64]"),
        ([], "missing input 'input'"),
        (
            [
                ("input", np.zeros((1, 64), np.float32), "FP32"),
                ("z", np.zeros(1, np.int32), "INT32"),
            ],
            "unexpected input 'z'",
        ),
    ],
    ids=["dtype", "shape", "missing", "extra"],
)
def test_bad_inputs_are_invalid_argument(
    client: Any, inputs: list[tuple[str, np.ndarray, str]], message: str
) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("onnx_mlp", [_input(*i) for i in inputs])
    assert _status(err) == "StatusCode.INVALID_ARGUMENT"
    assert message in err.value.message()
    assert client.infer("onnx_mlp", [_input("input", _mlp_input(), "FP32")]).as_numpy("output").size


def test_raw_contents_are_checked_against_the_shape(channel: grpc.Channel, client: Any) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    for shape, raw, message in [
        ([1, 64], b"\0" * 255, "expected 256 bytes, got 255"),
        ([-1, 64], b"\0" * 256, "size >= 0"),
        ([2**62, 2**62], b"\0" * 256, "elements per tensor"),
    ]:
        req = pb.ModelInferRequest(model_name="onnx_mlp")
        req.inputs.add(name="input", datatype="FP32", shape=shape)
        req.raw_input_contents.append(raw)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
    assert client.is_server_live()


def test_unknown_model_version_and_output(client: Any) -> None:
    x = [_input("input", _mlp_input(), "FP32")]
    for model, version in [("nope", ""), ("onnx_mlp", "9")]:
        with pytest.raises(InferenceServerException) as err:
            client.infer(model, x, model_version=version)
        assert _status(err) == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as err:
            client.get_model_metadata(model, version)
        assert _status(err) == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as err:
        client.infer("onnx_mlp", x, outputs=[tc.InferRequestedOutput("nope")])
    assert _status(err) == "StatusCode.INVALID_ARGUMENT" and "no output 'nope'" in str(err.value)


def test_oversized_message_is_resource_exhausted(client: Any) -> None:
    big = np.zeros((LIMIT // 256 + 1, 64), np.float32)  # just over the limit
    with pytest.raises(InferenceServerException) as err:
        client.infer("onnx_mlp", [_input("input", big, "FP32")])
    assert _status(err) == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.infer("onnx_mlp", [_input("input", _mlp_input(), "FP32")]).as_numpy("output").size


def test_health_service_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    db = ProtoReflectionDescriptorDatabase(channel)
    assert {
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "org.pytorch.serve.grpc.inference.InferenceAPIsService",
    } <= set(db.get_services())
    proto = db.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert "ModelInfer" in [m.name for m in proto.service[0].method]
    # the dialects are described too, with their dependencies (grpcurl needs them)
    proto = db.FindFileContainingSymbol("tensorflow.serving.PredictionService")
    assert "Predict" in [m.name for m in proto.service[0].method]
    proto = db.FindFileContainingSymbol("tensorflow.TensorProto")
    assert "tensor_content" in [f.name for f in proto.message_type[0].field]
    proto = db.FindFileContainingSymbol("org.pytorch.serve.grpc.inference.InferenceAPIsService")
    assert "Predictions" in [m.name for m in proto.service[0].method]


# --- deadlines and disconnects: the real server with fake, controllable runtimes ----------


@pytest.fixture
def slow_gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    store = fake_store(tmp_path)  # "double": y = 2x, FP32 [-1, 4], one instance, no batching
    add_fake_version(store, "gated")
    with InProcessGateway(store.root, Behavior(), request_timeout_s=0.5) as gw:
        yield gw


def test_deadline_exceeded(slow_gateway: InProcessGateway) -> None:
    slow_gateway.behavior.delay_s = 2.0
    x = [_input("x", np.ones((1, 4), np.float32), "FP32")]
    with tc.InferenceServerClient(slow_gateway.grpc) as client:
        with pytest.raises(InferenceServerException) as err:
            client.infer("double", x, client_timeout=0.2)  # the client's deadline
        assert _status(err) == "StatusCode.DEADLINE_EXCEEDED"
        with pytest.raises(InferenceServerException) as err:
            client.infer("double", x)  # none: the server's request_timeout_s
        assert _status(err) == "StatusCode.DEADLINE_EXCEEDED"
        slow_gateway.behavior.delay_s = 0.0  # a longer deadline outlasts the busy instance
        result = client.infer("double", x, client_timeout=30)
        np.testing.assert_array_equal(result.as_numpy("y"), [[2, 2, 2, 2]])


def test_a_request_whose_client_has_gone_never_runs(slow_gateway: InProcessGateway) -> None:
    behavior = slow_gateway.behavior
    behavior.gate, behavior.gated = threading.Event(), {"gated"}
    with tc.InferenceServerClient(slow_gateway.grpc) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            client.infer, "gated", [_input("x", np.full((1, 4), 1.0, np.float32), "FP32")]
        )
        end = time.monotonic() + 10
        while 1.0 not in behavior.firsts and time.monotonic() < end:  # the model is busy
            time.sleep(0.01)
        with pytest.raises(InferenceServerException) as err:  # queued, then abandoned
            client.infer(
                "gated", [_input("x", np.full((1, 4), 7.0, np.float32), "FP32")], client_timeout=0.2
            )
        assert _status(err) == "StatusCode.DEADLINE_EXCEEDED"
        behavior.gate.set()
        first.result(timeout=30)
        x = np.full((1, 4), 3.0, np.float32)
        np.testing.assert_array_equal(
            client.infer("gated", [_input("x", x, "FP32")]).as_numpy("y"), x * 2
        )
    assert 7.0 not in behavior.firsts and behavior.firsts.count(1.0) == 1
