"""Payload generation per protocol, checked with each protocol's own client code."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from loadtests.payloads import ModelRef, build_request, concrete_inputs, json_values
from loadtests.prepared import PROTOCOLS, PreparedRequest, grpc_target, load_prepared
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 4])
IDS = TensorSpec(name="ids", datatype="INT64", shape=[-1, 3])
TEXT = TensorSpec(name="text", datatype="BYTES", shape=[-1])
MODEL = ModelRef("mlp", "2")


def test_model_ref() -> None:
    assert ModelRef.parse("mlp") == ModelRef("mlp", None)
    assert ModelRef.parse("mlp:3") == ModelRef("mlp", "3")
    assert ModelRef.parse("mlp:stable") == ModelRef("mlp", "stable")
    for bad in ("", ":1", "a/b", "mlp:", "mlp:1:2", "a b"):
        with pytest.raises(InvalidArgument):
            ModelRef.parse(bad)


def test_concrete_inputs_dynamic_dims_and_overrides() -> None:
    inputs = concrete_inputs([X, IDS], batch=3)
    assert [a.shape for _, a in inputs] == [(3, 4), (3, 3)]
    assert inputs[0][1].dtype == np.float32 and inputs[1][1].dtype == np.int64
    inputs = concrete_inputs([X], shapes={"x": [5, 4]})
    assert inputs[0][1].shape == (5, 4)
    # deterministic: the same seed gives the same bytes
    np.testing.assert_array_equal(concrete_inputs([X])[0][1], concrete_inputs([X])[0][1])


@pytest.mark.parametrize(
    ("shapes", "batch", "message"),
    [
        ({"x": [2, 5]}, 1, "does not fit"),
        ({"y": [1, 4]}, 1, "unknown input"),
        (None, 0, "batch must be"),
        ({"x": [10**8, 4]}, 1, "bytes"),
    ],
)
def test_concrete_inputs_refuses(
    shapes: dict[str, list[int]] | None, batch: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        concrete_inputs([X], batch=batch, shapes=shapes)


def test_json_values_round_trip_float32_exactly() -> None:
    arr = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    text = json.dumps(json_values(arr))
    assert len(text) < 1000 * 13  # shortest float32 form, not 17-digit doubles
    np.testing.assert_array_equal(np.array(json.loads(text), dtype=np.float32), arr)


def test_oip_rest_json_matches_tritonclient() -> None:
    triton_http = pytest.importorskip("tritonclient.http")
    req = build_request("oip-rest", MODEL, [X, IDS], batch=2)
    assert req.target == "/v2/models/mlp/versions/2/infer"
    assert req.headers["Content-Type"] == "application/json"
    ours = json.loads(req.body)
    arrays = {s.name: a for s, a in concrete_inputs([X, IDS], batch=2)}
    infer_inputs = []
    for spec in (X, IDS):
        inp = triton_http.InferInput(spec.name, list(arrays[spec.name].shape), spec.datatype)
        inp.set_data_from_numpy(arrays[spec.name], binary_data=False)
        infer_inputs.append(inp)
    body, _ = triton_http.InferenceServerClient.generate_request_body(infer_inputs)
    theirs = json.loads(body)
    assert [(i["name"], i["shape"], i["datatype"]) for i in ours["inputs"]] == [
        (i["name"], i["shape"], i["datatype"]) for i in theirs["inputs"]
    ]
    for a, b in zip(ours["inputs"], theirs["inputs"], strict=True):
        dtype = arrays[a["name"]].dtype
        np.testing.assert_array_equal(np.array(a["data"], dtype), np.array(b["data"], dtype))


def test_oip_rest_binary_matches_tritonclient() -> None:
    triton_http = pytest.importorskip("tritonclient.http")
    req = build_request("oip-rest-binary", ModelRef("mlp"), [X, TEXT], batch=2)
    header_len = int(req.headers["Inference-Header-Content-Length"])
    header = json.loads(req.body[:header_len])
    assert header["parameters"] == {"binary_data_output": True}
    arrays = {s.name: a for s, a in concrete_inputs([X, TEXT], batch=2)}
    infer_inputs = []
    for spec in (X, TEXT):
        inp = triton_http.InferInput(spec.name, list(arrays[spec.name].shape), spec.datatype)
        inp.set_data_from_numpy(arrays[spec.name], binary_data=True)
        infer_inputs.append(inp)
    body, json_size = triton_http.InferenceServerClient.generate_request_body(infer_inputs)
    theirs = json.loads(body[:json_size])
    assert header["inputs"] == theirs["inputs"]  # names, shapes, datatypes, binary_data_size
    assert req.body[header_len:] == body[json_size:]  # the exact same tensor bytes


def test_oip_grpc_parses_with_tritonclient_stubs() -> None:
    pytest.importorskip("tritonclient.grpc")
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import deserialize_bytes_tensor

    req = build_request("oip-grpc", MODEL, [X, TEXT], batch=3)
    assert req.target == "/inference.GRPCInferenceService/ModelInfer"
    assert PROTOCOLS[req.protocol] == "grpc"
    msg = service_pb2.ModelInferRequest.FromString(req.body)
    assert (msg.model_name, msg.model_version) == ("mlp", "2")
    arrays = {s.name: a for s, a in concrete_inputs([X, TEXT], batch=3)}
    assert [(t.name, t.datatype, list(t.shape)) for t in msg.inputs] == [
        ("x", "FP32", [3, 4]),
        ("text", "BYTES", [3]),
    ]
    got_x = np.frombuffer(msg.raw_input_contents[0], "<f4").reshape(3, 4)
    np.testing.assert_array_equal(got_x, arrays["x"])
    assert list(deserialize_bytes_tensor(msg.raw_input_contents[1])) == list(arrays["text"])


def test_tfserving_rest_row_and_columnar_formats() -> None:
    req = build_request("tfserving-rest", ModelRef("mlp", "stable"), [X], batch=2)
    assert req.target == "/v1/models/mlp/labels/stable:predict"
    assert req.expect == b'"predictions"'
    arr = concrete_inputs([X], batch=2)[0][1]
    np.testing.assert_array_equal(np.array(json.loads(req.body)["instances"], np.float32), arr)

    req = build_request("tfserving-rest", MODEL, [X, IDS], batch=2)
    assert req.target == "/v1/models/mlp/versions/2:predict"
    rows = json.loads(req.body)["instances"]
    assert len(rows) == 2 and set(rows[0]) == {"x", "ids"}

    req = build_request(
        "tfserving-rest", MODEL, [X], tfserving_format="inputs", signature_name="sig"
    )
    body = json.loads(req.body)
    assert body["signature_name"] == "sig" and set(body["inputs"]) == {"x"}
    assert req.expect == b'"outputs"'


def test_tfserving_rest_rows_need_a_shared_first_dimension() -> None:
    scalar = TensorSpec(name="s", datatype="FP32", shape=[])
    with pytest.raises(InvalidArgument, match="--tfserving-format inputs"):
        build_request("tfserving-rest", MODEL, [X, scalar])
    build_request("tfserving-rest", MODEL, [X, scalar], tfserving_format="inputs")


@pytest.mark.tensorflow
def test_tfserving_grpc_parses_with_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_serving")
    from tensorflow_serving.apis import predict_pb2

    req = build_request("tfserving-grpc", MODEL, [X, IDS, TEXT], batch=2)
    assert req.target == "/tensorflow.serving.PredictionService/Predict"
    msg = predict_pb2.PredictRequest.FromString(req.body)
    assert msg.model_spec.name == "mlp" and msg.model_spec.version.value == 2
    assert msg.model_spec.signature_name == "serving_default"
    arrays = {s.name: a for s, a in concrete_inputs([X, IDS, TEXT], batch=2)}
    for name, arr in arrays.items():
        np.testing.assert_array_equal(tf.make_ndarray(msg.inputs[name]), arr)
    labelled = predict_pb2.PredictRequest.FromString(
        build_request("tfserving-grpc", ModelRef("mlp", "canary"), [X]).body
    )
    assert labelled.model_spec.version_label == "canary"


def test_torchserve_json_and_npy() -> None:
    req = build_request("torchserve-rest", MODEL, [X], batch=2)
    assert req.target == "/predictions/mlp/2"
    arr = concrete_inputs([X], batch=2)[0][1]
    np.testing.assert_array_equal(np.array(json.loads(req.body), np.float32), arr)
    req = build_request("torchserve-rest", ModelRef("mlp"), [X], torchserve_format="npy")
    assert req.target == "/predictions/mlp" and req.headers["Content-Type"] == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(req.body)), concrete_inputs([X])[0][1])
    body = json.loads(build_request("torchserve-rest", MODEL, [X, IDS]).body)
    assert set(body) == {"x", "ids"}
    with pytest.raises(InvalidArgument, match="json"):
        build_request("torchserve-rest", MODEL, [X, IDS], torchserve_format="npy")


def test_names_are_url_quoted() -> None:
    req = build_request("oip-rest", ModelRef("my.model-v2", "stable"), [X])
    assert req.target == "/v2/models/my.model-v2/versions/stable/infer"


def test_unknown_protocol() -> None:
    with pytest.raises(InvalidArgument, match="unknown protocol"):
        build_request("soap", MODEL, [X])


def test_prepared_request_round_trip(tmp_path: Path) -> None:
    req = build_request("oip-rest-binary", MODEL, [X])
    loaded = load_prepared(req.save(tmp_path / "req"))
    assert loaded == req
    with pytest.raises(ValueError, match="no prepared request"):
        load_prepared(tmp_path / "missing")
    (tmp_path / "req" / "request.json").write_text('{"protocol": "soap"}')
    with pytest.raises(ValueError, match="unknown protocol"):
        load_prepared(tmp_path / "req")


def test_grpc_target() -> None:
    assert grpc_target("grpc://127.0.0.1:8081") == "127.0.0.1:8081"
    assert grpc_target("localhost:9000") == "localhost:9000"
    for bad in ("grpcs://h:1", "127.0.0.1", "ftp://h:1"):
        with pytest.raises(InvalidArgument):
            grpc_target(bad)


def test_every_protocol_builds() -> None:
    for protocol in PROTOCOLS:
        if protocol == "tfserving-grpc":
            continue  # needs TensorFlow: covered above
        req = build_request(protocol, MODEL, [X])
        assert isinstance(req, PreparedRequest) and req.body and req.protocol == protocol
