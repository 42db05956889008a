"""TF Serving codecs alone (REST JSON and gRPC TensorProto): pure functions, no server."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from gateway.protocols.json_tensors import json_value, probe_shape, to_array
from gateway.protocols.tfserving import grpc_codec, rest_codec
from gateway.protocols.tfserving.generated.tensorflow.core.framework import (
    tensor_pb2,
    types_pb2,
)
from gateway.protocols.tfserving.generated.tensorflow_serving.apis import predict_pb2
from gateway.types import InferResponse, ModelMetadata
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 3])
IDS = TensorSpec(name="ids", datatype="INT64", shape=[-1])
TEXT = TensorSpec(name="text", datatype="BYTES", shape=[-1])
Y = TensorSpec(name="y", datatype="FP32", shape=[-1, 2])


def decode(doc: Any, inputs: list[TensorSpec]) -> tuple[dict[str, np.ndarray], bool]:
    req, row = rest_codec.decode_predict(json.dumps(doc).encode(), inputs, max_depth=16)
    return req.inputs, row


def response(**outputs: np.ndarray) -> InferResponse:
    specs = [TensorSpec(name=n, datatype="FP32", shape=[-1]) for n in outputs]
    return InferResponse("m", "1", dict(outputs), specs)


# --- REST requests -----------------------------------------------------------------------
def test_row_format_single_input_stacks_rows() -> None:
    inputs, row = decode({"instances": [[1, 2, 3], [4, 5, 6]]}, [X])
    assert row
    assert inputs["x"].dtype == np.float32 and inputs["x"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_row_format_named_inputs_and_b64() -> None:
    blob = b"\x00\xffbinary"
    doc = {
        "signature_name": "serving_default",
        "instances": [
            {"ids": 1, "text": {"b64": base64.b64encode(blob).decode()}},
            {"ids": 2, "text": "plain"},
        ],
    }
    inputs, row = decode(doc, [IDS, TEXT])
    assert row and inputs["ids"].tolist() == [1, 2] and inputs["ids"].dtype == np.int64
    assert inputs["text"].tolist() == [blob, b"plain"]


def test_columnar_format() -> None:
    inputs, row = decode({"inputs": {"x": [[1.5, 2, 3]]}}, [X])
    assert not row and inputs["x"].shape == (1, 3)
    inputs, _ = decode({"inputs": [[1.5, 2, 3]]}, [X])
    assert inputs["x"].tolist() == [[1.5, 2, 3]]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ([1, 2], "JSON object"),
        ({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, "exactly one of"),
        ({}, "exactly one of"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [[1, 2, 3]], "signature_name": "other"}, "signature 'other' not found"),
        ({"instances": [[1, 2, 3]], "bogus": 1}, "unknown key 'bogus'"),
        ({"instances": [[1, 2, 3], [4, 5]]}, "not a regular array"),
        ({"instances": [[1, 2, "a"]]}, "must be numbers"),
        ({"inputs": {"zz": [1]}}, "unexpected input 'zz'"),
        ({"inputs": {"x": [[{"b64": "AA=="}]]}}, "must be numbers"),
    ],
)
def test_bad_rest_requests(doc: Any, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        decode(doc, [X])


def test_rows_must_name_the_same_inputs() -> None:
    with pytest.raises(InvalidArgument, match="same inputs"):
        decode({"instances": [{"ids": 1, "text": "a"}, {"ids": 2}]}, [IDS, TEXT])
    with pytest.raises(InvalidArgument, match="several inputs"):
        decode({"instances": [[1, 2]]}, [IDS, TEXT])


def test_bad_b64_and_ragged_bytes() -> None:
    with pytest.raises(InvalidArgument, match="not valid base64"):
        decode({"inputs": {"text": [{"b64": "!!"}]}}, [TEXT])
    with pytest.raises(InvalidArgument, match="ragged"):
        to_array("text", "BYTES", [["a"], "b"])


def test_nesting_deeper_than_any_tensor_is_refused() -> None:
    deep: Any = 1.0
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidArgument, match="dimensions"):
        probe_shape("x", deep)


# --- REST responses ----------------------------------------------------------------------
def test_predictions_and_outputs_shapes() -> None:
    one = response(y=np.array([[1, 2], [3, 4]], np.float32))
    assert json.loads(rest_codec.encode_predict(one, row=True)) == {"predictions": [[1, 2], [3, 4]]}
    assert json.loads(rest_codec.encode_predict(one, row=False)) == {"outputs": [[1, 2], [3, 4]]}
    two = response(a=np.array([1, 2], np.float32), b=np.array([3, 4], np.float32))
    assert json.loads(rest_codec.encode_predict(two, row=True)) == {
        "predictions": [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    }
    assert json.loads(rest_codec.encode_predict(two, row=False)) == {
        "outputs": {"a": [1, 2], "b": [3, 4]}
    }


def test_nan_and_bytes_outputs() -> None:
    nan = response(y=np.array([np.nan, np.inf], np.float32))
    assert b"NaN" in rest_codec.encode_predict(nan, row=False)
    arr = np.array([b"ok", b"\xff"], dtype=object)
    assert json_value(arr) == ["ok", {"b64": base64.b64encode(b"\xff").decode()}]
    assert json_value(np.array([b"ok"], dtype=object), b64=True) == [{"b64": "b2s="}]
    assert json_value(np.zeros((2, 0), np.float32)).shape == (2, 0)
    assert json_value(np.empty((2, 0), dtype=object)) == [[], []]


def test_status_and_metadata_documents() -> None:
    status = json.loads(rest_codec.encode_status([("1", True), ("2", False)]))
    first, second = status["model_version_status"]
    assert first == {"version": "1", "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}}  # fmt: skip
    assert second["state"] == "UNKNOWN" and second["status"]["error_code"] == "UNAVAILABLE"
    meta = ModelMetadata("m", ["1"], "onnx", [X], [Y])
    doc = json.loads(rest_codec.encode_metadata(meta, "1"))
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "3", "name": ""},
    ]


# --- gRPC TensorProto ----------------------------------------------------------------------
def tensor(dtype: int, shape: list[int], **fields: Any) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)  # type: ignore[arg-type]
    for d in shape:
        proto.tensor_shape.dim.add(size=d)
    return proto


def test_tensor_content_and_typed_values_agree() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = tensor(types_pb2.DT_FLOAT, [2, 3], tensor_content=arr.tobytes())
    typed = tensor(types_pb2.DT_FLOAT, [2, 3], float_val=arr.ravel().tolist())
    a, used_raw = grpc_codec.decode_tensor("x", raw)
    b, used_typed = grpc_codec.decode_tensor("x", typed)
    assert used_raw and not used_typed
    np.testing.assert_array_equal(a, arr)
    np.testing.assert_array_equal(b, arr)


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP16", np.array([1.5, -2.0], np.float16)),
        ("INT8", np.array([-128, 127], np.int8)),
        ("UINT16", np.array([0, 65535], np.uint16)),
        ("INT64", np.array([-(2**62), 2**62], np.int64)),
        ("BOOL", np.array([True, False])),
        ("BYTES", np.array([b"a", b"\x00b"], dtype=object)),
        ("FP64", np.array([0.1, np.nan])),
    ],
)
@pytest.mark.parametrize("raw", [True, False])
def test_encode_decode_round_trip(datatype: str, values: np.ndarray, raw: bool) -> None:
    proto = grpc_codec.encode_tensor(values, datatype, raw=raw)
    back, _ = grpc_codec.decode_tensor("t", tensor_pb2.TensorProto.FromString(
        proto.SerializeToString()))  # fmt: skip
    assert back.dtype == values.dtype
    np.testing.assert_array_equal(back, values)


def test_a_single_typed_value_fills_the_shape() -> None:
    arr, _ = grpc_codec.decode_tensor("x", tensor(types_pb2.DT_INT32, [2, 2], int_val=[7]))
    assert arr.tolist() == [[7, 7], [7, 7]]


@pytest.mark.parametrize(
    ("proto", "fragment"),
    [
        (tensor(types_pb2.DT_FLOAT, [2], float_val=[1.0, 2.0, 3.0]), "expected 2 values"),
        (tensor(types_pb2.DT_FLOAT, [4], tensor_content=b"\x00" * 15), "expected 16 bytes, got 15"),
        (tensor(types_pb2.DT_FLOAT, [2], int_val=[1, 2]), "values are in int_val"),
        (tensor(types_pb2.DT_INT8, [1], int_val=[300]), "outside"),
        (tensor(types_pb2.DT_COMPLEX64, [1]), "does not serve"),
        (tensor(types_pb2.DT_STRING, [1], tensor_content=b"abcd"), "string_val"),
        (tensor(types_pb2.DT_FLOAT, [-1], float_val=[1.0]), ">= 0"),
        (tensor(types_pb2.DT_FLOAT, [1 << 40, 1 << 40], float_val=[1.0]), "at most"),
        (tensor(types_pb2.DT_HALF, [1], half_val=[70000]), "FP16 bits"),
        (tensor(types_pb2.DT_FLOAT, [1 << 19], float_val=[1.0]), "at most 65536 elements"),
    ],
)
def test_bad_tensor_protos(proto: tensor_pb2.TensorProto, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        grpc_codec.decode_tensor("x", proto, max_elements=1 << 20)


def test_predict_request_versions_and_filters() -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    assert grpc_codec.model_version(req.model_spec) is None
    req.model_spec.version.value = 3
    assert grpc_codec.model_version(req.model_spec) == "3"
    req.model_spec.version_label = "stable"
    assert grpc_codec.model_version(req.model_spec) == "stable"
    req.inputs["x"].CopyFrom(tensor(types_pb2.DT_FLOAT, [1, 3], float_val=[1, 2, 3]))
    req.output_filter.extend(["y", "y"])
    with pytest.raises(InvalidArgument, match="twice"):
        grpc_codec.decode_predict(req)
    del req.output_filter[:]
    req.output_filter.append("y")
    decoded, raw = grpc_codec.decode_predict(req)
    assert decoded.requested_outputs == ["y"] and not raw
    req.model_spec.signature_name = "classify_x"
    with pytest.raises(InvalidArgument, match="not found"):
        grpc_codec.decode_predict(req)


def test_metadata_response_packs_a_signature_def_map() -> None:
    from gateway.protocols.tfserving.generated.tensorflow_serving.apis import (
        get_model_metadata_pb2,
    )

    resp = grpc_codec.encode_metadata(ModelMetadata("m", ["1", "2"], "onnx", [X], [Y]), None)
    assert resp.model_spec.version.value == 2
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sigs)
    sig = sigs.signature_def["serving_default"]
    assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [-1, 3]
    assert sig.outputs["y"].dtype == types_pb2.DT_FLOAT
    with pytest.raises(InvalidArgument, match="signature_def"):
        grpc_codec.check_metadata_fields(["other"])
