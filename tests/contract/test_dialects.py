"""One model, five dialects: OIP v2 (REST, gRPC), TF Serving (REST, gRPC) and TorchServe (REST,
gRPC) give identical outputs from a real ``truce serve`` process, for a PyTorch and a
TensorFlow model; bad input gets each dialect's own error shape, and the status every
dialect picks for one failure is the one table's (``gateway/status.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from gateway.protocols.oip.generated import grpc_service_pb2 as oip_pb
from gateway.protocols.oip.generated import grpc_service_pb2_grpc as oip_grpc
from gateway.status import grpc_status, http_status
from model_store.store import ModelStore
from tests.gateway.conftest import GatewayProcess
from tests.gateway.protocols.torchserve.test_ts_server import torchserve_client
from tests.gateway.runtimes.test_conformance import CASES
from truce.errors import ErrorCode

pytestmark = pytest.mark.slow
tfs = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
pytest.importorskip("torch")
from tensorflow_serving.apis import predict_pb2  # noqa: E402

#: model -> its input name (the zoo's MLP, FP32 [-1, 64] -> [-1, 10], in both frameworks)
MODELS = {"torchscript_mlp": "input", "savedmodel_mlp": "x"}
Outputs = np.ndarray
Client = Callable[[str, str, np.ndarray], Outputs]


@pytest.fixture(scope="module")
def server(model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GatewayProcess]:  # fmt: skip
    root = tmp_path_factory.mktemp("dialects") / "store"
    store = ModelStore(root)
    cases = {c.key: c for c in CASES}
    for key in MODELS:
        store.add_version(key, model_files[key], format=cases[key].format,
                          signature=cases[key].signature)  # fmt: skip
    with GatewayProcess(root, tmp_path_factory.mktemp("dialects-serve")) as gw:
        yield gw


@pytest.fixture(scope="module")
def channel(server: GatewayProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc) as ch:
        yield ch


@pytest.fixture(scope="module")
def ts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return torchserve_client(tmp_path_factory.mktemp("ts-client"))


# --- one request per dialect -----------------------------------------------------------------
def oip_rest(server: GatewayProcess, model: str, name: str, x: np.ndarray) -> httpx.Response:
    body = {"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}  # fmt: skip
    return httpx.post(f"{server.http_url}/v2/models/{model}/infer", json=body, timeout=60)


def oip_grpc_call(channel: grpc.Channel, model: str, name: str, x: np.ndarray) -> Any:
    req = oip_pb.ModelInferRequest(model_name=model)
    req.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.astype(np.float32).tobytes())
    return oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=60)


def tfs_rest(server: GatewayProcess, model: str, name: str, x: np.ndarray) -> httpx.Response:
    body = {"instances": x.tolist()}
    return httpx.post(f"{server.http_url}/v1/models/{model}:predict", json=body, timeout=60)


def tfs_grpc_call(channel: grpc.Channel, model: str, name: str, x: np.ndarray) -> Any:
    import tensorflow as tf

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs[name].CopyFrom(tf.make_tensor_proto(x))
    return tfs.PredictionServiceStub(channel).Predict(req, timeout=60)


def ts_rest(server: GatewayProcess, model: str, name: str, x: np.ndarray) -> httpx.Response:
    return httpx.post(f"{server.http_url}/predictions/{model}", json=x.tolist(), timeout=60)


def ts_grpc_call(ts: tuple[Any, Any], channel: grpc.Channel, model: str, x: np.ndarray) -> Any:
    pb, pb_grpc = ts
    req = pb.PredictionsRequest(model_name=model, input={"data": json.dumps(x.tolist()).encode()})
    return pb_grpc.InferenceAPIsServiceStub(channel).Predictions(req, timeout=60)


# --- same outputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_every_dialect_gives_the_same_outputs(
    server: GatewayProcess, channel: grpc.Channel, ts: tuple[Any, Any], model: str
) -> None:
    import tensorflow as tf

    name = MODELS[model]
    x = np.random.default_rng(3).standard_normal((3, 64)).astype(np.float32)
    r = oip_rest(server, model, name, x)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    results = {"oip-rest": np.array(out["data"], np.float32).reshape(out["shape"])}
    g = oip_grpc_call(channel, model, name, x)
    results["oip-grpc"] = np.frombuffer(g.raw_output_contents[0], np.float32).reshape(
        list(g.outputs[0].shape)
    )
    results["tfs-rest"] = np.array(tfs_rest(server, model, name, x).json()["predictions"],
                                   np.float32)  # fmt: skip
    t = tfs_grpc_call(channel, model, name, x)
    (tensor,) = t.outputs.values()
    results["tfs-grpc"] = tf.make_ndarray(tensor)
    results["ts-rest"] = np.array(ts_rest(server, model, name, x).json(), np.float32)
    results["ts-grpc"] = np.array(json.loads(ts_grpc_call(ts, channel, model, x).prediction),
                                  np.float32)  # fmt: skip
    want = results["oip-grpc"]
    assert want.shape == (3, 10) and want.dtype == np.float32
    for dialect, got in results.items():
        np.testing.assert_array_equal(got, want, err_msg=dialect)


# --- the same failures, each in its dialect's shape ---------------------------------------------
BAD = np.zeros((1, 3), np.float32)  # the models take 64 features


def _grpc_code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


@pytest.mark.parametrize(
    ("model", "code"),
    [("torchscript_mlp", ErrorCode.INVALID_ARGUMENT), ("nope", ErrorCode.NOT_FOUND)],
)
def test_every_dialect_maps_a_failure_through_the_one_table(
    server: GatewayProcess, channel: grpc.Channel, ts: tuple[Any, Any], model: str,
    code: ErrorCode,
) -> None:  # fmt: skip
    status, rpc = http_status(code), grpc_status(code)
    name = MODELS.get(model, "input")
    for call in (oip_rest, tfs_rest):
        r = call(server, model, name, BAD)
        assert r.status_code == status and list(r.json()) == ["error"], (call.__name__, r.text)
    r = ts_rest(server, model, name, BAD)
    kind = "BadRequestException" if code is ErrorCode.INVALID_ARGUMENT else "ModelNotFoundException"
    assert r.status_code == status and r.json()["code"] == status and r.json()["type"] == kind
    assert _grpc_code(lambda: oip_grpc_call(channel, model, name, BAD)) is rpc
    assert _grpc_code(lambda: tfs_grpc_call(channel, model, name, BAD)) is rpc
    assert _grpc_code(lambda: ts_grpc_call(ts, channel, model, BAD)) is rpc


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/v2/models/torchscript_mlp/infer", b'{"inputs": [', "oip"),
        ("/v1/models/torchscript_mlp:predict", b'{"instances": [', "tfs"),
        ("/predictions/torchscript_mlp", b"[[1, 2", "ts"),
        ("/v1/models/torchscript_mlp:predict", b'{"instances": [["a"]]}', "tfs"),
        ("/predictions/torchscript_mlp", b'[["a"]]', "ts"),
        ("/v1/models/torchscript_mlp:predict", b'{"instances": [[1], [1, 2]]}', "tfs"),
        ("/predictions/torchscript_mlp", b"\x93NUMPY\x01\x00\x08\x00{}", "ts"),
    ],
)
def test_malformed_bodies_are_400s_in_each_dialects_shape(
    server: GatewayProcess, path: str, body: bytes, shape: str
) -> None:
    r = httpx.post(server.http_url + path, content=body, timeout=60)
    assert r.status_code == 400, r.text
    doc = r.json()
    if shape == "ts":
        assert doc["code"] == 400 and doc["type"] == "BadRequestException" and doc["message"]
    else:
        assert list(doc) == ["error"] and doc["error"]
    assert "Traceback" not in r.text and ".py" not in r.text
    ok = ts_rest(server, "torchscript_mlp", "input", np.zeros((1, 64), np.float32))
    assert ok.status_code == 200  # alive
