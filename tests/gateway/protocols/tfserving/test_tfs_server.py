"""TF Serving's APIs on a running gateway (fake runtime ``y = 2 * x``): plain HTTP shaped as
TF Serving's REST documentation shows, and the real ``tensorflow-serving-api`` stubs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from model_store.store import ModelStore
from tests.gateway.conftest import InProcessGateway
from tests.gateway.fakes import add_fake_version

apis = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

X = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    root = tmp_path_factory.mktemp("tfs") / "store"
    store = ModelStore(root)
    add_fake_version(store, "double")
    add_fake_version(store, "double")
    store.set_alias("double", "stable", 1)
    with InProcessGateway(root, version_policy="all", max_json_depth=32) as server:
        yield server


@pytest.fixture
def http(gw: InProcessGateway) -> Iterator[httpx.Client]:
    gw.behavior.delay_s = 0.0
    with httpx.Client(base_url=gw.http_url, timeout=30) as client:
        yield client
    # alive after whatever the test sent
    r = httpx.post(f"{gw.http_url}/v1/models/double:predict", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 200 and r.json() == {"predictions": [[2, 4, 6, 8]]}


@pytest.fixture(scope="module")
def channel(gw: InProcessGateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gw.grpc) as ch:
        yield ch


# --- REST, as in https://www.tensorflow.org/tfx/serving/api_rest ---------------------------
def test_status_and_metadata(http: httpx.Client) -> None:
    r = http.get("/v1/models/double")
    assert r.status_code == 200
    states = r.json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in states] == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
    assert (
        http.get("/v1/models/double/versions/1").json()["model_version_status"][0]["version"] == "1"
    )
    label = http.get("/v1/models/double/labels/stable")  # the version the label points at
    assert label.json()["model_version_status"][0]["version"] == "1"
    meta = http.get("/v1/models/double/versions/2/metadata").json()
    assert meta["model_spec"] == {"name": "double", "signature_name": "", "version": "2"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert sig["outputs"]["y"]["tensor_shape"]["dim"][1]["size"] == "4"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/double:predict",
        "/v1/models/double/versions/1:predict",
        "/v1/models/double/labels/stable:predict",
    ],
)
def test_predict_row_and_columnar(http: httpx.Client, path: str) -> None:
    r = http.post(path, json={"signature_name": "serving_default", "instances": X})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": (2 * np.array(X)).tolist()}
    r = http.post(path, json={"inputs": {"x": X}})
    assert r.json() == {"outputs": (2 * np.array(X)).tolist()}
    r = http.post(path, json={"instances": [{"x": X[0]}, {"x": X[1]}]})
    assert r.json()["predictions"][1] == [10, 12, 14, 16]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/v1/models/double:classify", {"examples": []}, 400, "no classify signature"),
        ("POST", "/v1/models/double:regress", {"examples": []}, 400, "no regress signature"),
        ("POST", "/v1/models/double:predict", {"instances": [[1, 2, 3]]}, 400, "shape [1, 3]"),
        ("POST", "/v1/models/double:predict", {"instances": [[1, 2], [1]]}, 400, "regular"),
        ("POST", "/v1/models/double:predict", {"inputs": {"z": [1]}}, 400, "unexpected input"),
        ("POST", "/v1/models/double:predict", {"instances": X, "signature_name": "x"}, 400,
         "not found"),
        ("POST", "/v1/models/double:predict", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/models/double:predict", b"", 400, "not valid JSON"),
        ("POST", "/v1/models/double:explain", {"instances": X}, 404, "unknown method"),
        ("POST", "/v1/models/nope:predict", {"instances": X}, 404, "unknown model"),
        ("POST", "/v1/models/double/versions/9:predict", {"instances": X}, 404, "no version 9"),
        ("POST", "/v1/models/double/versions/abc:predict", {"instances": X}, 400, "a number"),
        ("POST", "/v1/models/double/labels/nope:predict", {"instances": X}, 404, "no alias"),
        ("GET", "/v1/models/double:predict", None, 405, "needs POST"),
        ("POST", "/v1/models/double", {"instances": X}, 405, "needs a method"),
        ("DELETE", "/v1/models/double", None, 405, "not allowed"),
        ("GET", "/v1/models/nope/metadata", None, 404, "unknown model"),
    ],
)  # fmt: skip
def test_errors_are_tf_serving_error_bodies(
    http: httpx.Client, method: str, path: str, body: Any, status: int, fragment: str
) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = http.request(method, path, **(kwargs if body is not None else {}))
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and fragment in r.json()["error"], r.text


def test_deep_json_is_refused(http: httpx.Client) -> None:
    deep = "[" * 5000 + "]" * 5000
    r = http.post("/v1/models/double:predict", content=f'{{"instances": {deep}}}')
    assert r.status_code == 400 and "dep" in r.json()["error"]  # depth, deeper


def test_rest_deadline(gw: InProcessGateway, http: httpx.Client) -> None:
    gw.behavior.delay_s = 1.0
    r = http.post(
        "/v1/models/double:predict", json={"instances": X}, headers={"X-Request-Timeout": "0.05"}
    )
    assert r.status_code == 504 and "deadline" in r.json()["error"]


def test_b64_values_reach_the_model_as_bytes(http: httpx.Client) -> None:
    # the fake model takes FP32 x, so a b64 value is refused, naming the input
    blob = base64.b64encode(b"\x00\x01").decode()
    r = http.post("/v1/models/double:predict", json={"instances": [{"x": {"b64": blob}}]})
    assert r.status_code == 400 and "'x'" in r.json()["error"]


# --- gRPC with tensorflow-serving-api's own stubs --------------------------------------------
def _predict_request(name: str = "double", *, typed: bool = False) -> Any:
    from tensorflow.core.framework import tensor_pb2, types_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    arr = np.array(X, dtype=np.float32)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for d in arr.shape:
        proto.tensor_shape.dim.add(size=d)
    if typed:
        proto.float_val.extend(arr.ravel().tolist())
    else:
        proto.tensor_content = arr.tobytes()
    req.inputs["x"].CopyFrom(proto)
    return req


@pytest.mark.parametrize("typed", [False, True])
def test_grpc_predict(channel: grpc.Channel, typed: bool) -> None:
    import tensorflow as tf

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = _predict_request(typed=typed)
    req.model_spec.version_label = "stable"
    resp = stub.Predict(req, timeout=30)
    assert resp.model_spec.name == "double" and resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == "serving_default"
    out = tf.make_ndarray(resp.outputs["y"])
    np.testing.assert_array_equal(out, 2 * np.array(X, dtype=np.float32))
    assert bool(resp.outputs["y"].tensor_content) != typed  # answers in the request's form
    req.model_spec.version.value = 2
    assert stub.Predict(req, timeout=30).model_spec.version.value == 2


def test_grpc_metadata_and_status(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "double"
    resp = stub.GetModelMetadata(req, timeout=30)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sigs)
    assert list(sigs.signature_def["serving_default"].inputs) == ["x"]
    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    sreq = get_model_status_pb2.GetModelStatusRequest()
    sreq.model_spec.name = "double"
    states = status_stub.GetModelStatus(sreq, timeout=30).model_version_status
    assert [(s.version, s.state) for s in states] == [(1, 30), (2, 30)]  # 30: AVAILABLE
    sreq.model_spec.version_label = "stable"
    states = status_stub.GetModelStatus(sreq, timeout=30).model_version_status
    assert [(s.version, s.state) for s in states] == [(1, 30)]


def _code(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_grpc_errors(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    code, details = _code(stub.Predict, _predict_request("nope"))
    assert code is grpc.StatusCode.NOT_FOUND and "nope" in details
    bad = _predict_request()
    bad.inputs["x"].tensor_content = b"\x00" * 3
    code, details = _code(stub.Predict, bad)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "expected 32 bytes, got 3" in details
    empty = predict_pb2.PredictRequest()
    assert _code(stub.Predict, empty)[0] is grpc.StatusCode.INVALID_ARGUMENT
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "double"
    code, details = _code(stub.Classify, classify)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "no classify signature" in details
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["other"])
    meta.model_spec.name = "double"
    assert _code(stub.GetModelMetadata, meta)[0] is grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_deadline(gw: InProcessGateway, channel: grpc.Channel) -> None:
    gw.behavior.delay_s = 1.0
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(_predict_request(), timeout=0.1)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        gw.behavior.delay_s = 0.0
