"""ModelInferRequest/Response <-> core types: round trips and every malformed-size case."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gateway.protocols.oip import grpc_codec as codec
from gateway.protocols.oip.generated import grpc_service_pb2 as pb
from gateway.types import InferResponse, ModelMetadata
from model_store.signature import NUMPY_DTYPES, TensorSpec
from truce.errors import InvalidArgument

NUMERIC = [dt for dt in NUMPY_DTYPES if dt != "BYTES"]


def _sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        arr = np.empty(shape, dtype=object)
        for i, idx in enumerate(np.ndindex(*shape)):
            arr[idx] = b"x" * i + b"\x00\xff"
        return arr
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    dt = NUMPY_DTYPES[datatype]
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    return rng.standard_normal(size=shape).astype(dt)


def _bytes_raw(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def _raw_request(name: str, datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name=name, datatype=datatype, shape=shape)
    msg.raw_input_contents.append(raw)
    return msg


def _response(arrays: dict[str, np.ndarray]) -> InferResponse:
    return InferResponse(model_name="m", model_version="1", outputs=arrays, output_specs=[])


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_raw_round_trip_every_datatype(datatype: str) -> None:
    arr = _sample(datatype, (2, 3))
    resp = codec.encode_infer_response(_response({"y": arr}), raw=True)
    assert len(resp.raw_output_contents) == 1 and not resp.outputs[0].HasField("contents")
    assert resp.outputs[0].datatype == datatype and list(resp.outputs[0].shape) == [2, 3]
    # the response bytes are valid request bytes: decode them back
    req = codec.decode_infer_request(
        _raw_request("y", datatype, [2, 3], resp.raw_output_contents[0])
    )
    got = req.inputs["y"]
    assert got.dtype == arr.dtype and got.shape == arr.shape
    assert (got == arr).all()


@pytest.mark.parametrize("datatype", list(codec.CONTENTS_FIELD))
def test_typed_round_trip_every_datatype(datatype: str) -> None:
    arr = _sample(datatype, (3, 2))
    resp = codec.encode_infer_response(_response({"y": arr}), raw=False)
    assert not resp.raw_output_contents
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="y", datatype=datatype, shape=[3, 2]).contents.CopyFrom(
        resp.outputs[0].contents
    )
    got = codec.decode_infer_request(msg).inputs["y"]
    assert got.dtype == arr.dtype and (got == arr).all()


def test_fp16_output_is_always_raw() -> None:
    arrays = {"a": np.ones((2,), np.float32), "h": np.ones((2,), np.float16)}
    resp = codec.encode_infer_response(_response(arrays), raw=False)
    assert len(resp.raw_output_contents) == 2
    assert not any(o.HasField("contents") for o in resp.outputs)


def test_fp16_typed_input_is_refused() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="h", datatype="FP16", shape=[1])
    with pytest.raises(InvalidArgument, match="raw_input_contents"):
        codec.decode_infer_request(msg)


def test_request_fields_carry_over() -> None:
    msg = _raw_request("x", "FP32", [1, 2], np.zeros(2, "<f4").tobytes())
    msg.id = "req-1"
    msg.outputs.add(name="y")
    msg.parameters["priority"].int64_param = 3
    msg.parameters["flag"].bool_param = True
    msg.parameters["s"].string_param = "v"
    req = codec.decode_infer_request(msg)
    assert req.id == "req-1" and req.requested_outputs == ["y"] and req.protocol == "grpc"
    assert req.parameters == {"priority": 3, "flag": True, "s": "v"}
    assert codec.decode_infer_request(pb.ModelInferRequest()).requested_outputs is None


def test_response_parameters_and_id() -> None:
    resp = _response({"y": np.zeros((1,), np.float32)})
    resp.id = "abc"
    resp.parameters = {"b": True, "i": -4, "u": 2**64 - 1, "f": 0.5, "s": "x"}
    out = codec.encode_infer_response(resp, raw=False)
    assert out.id == "abc" and out.model_version == "1"
    assert codec.parameters_to_python(out.parameters) == resp.parameters


def test_model_metadata() -> None:
    meta = ModelMetadata(
        name="m",
        versions=["1", "2"],
        platform="torchscript",
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 64])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 10])],
    )
    out = codec.encode_model_metadata(meta)
    assert list(out.versions) == ["1", "2"] and list(out.inputs[0].shape) == [-1, 64]
    assert out.outputs[0].name == "y"


# --- every size is checked against the bytes received ------------------------------------


@pytest.mark.parametrize(
    ("datatype", "shape", "size", "message"),
    [
        ("FP32", [2, 3], 20, "expected 24 bytes, got 20"),
        ("FP32", [2, 3], 28, "expected 24 bytes, got 28"),
        ("INT64", [1], 4, "expected 8 bytes, got 4"),
        ("FP16", [4], 6, "expected 8 bytes, got 6"),
        ("FP32", [0, 5], 4, "expected 0 bytes, got 4"),
    ],
)
def test_raw_size_mismatch(datatype: str, shape: list[int], size: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        codec.decode_infer_request(_raw_request("x", datatype, shape, b"\0" * size))


@pytest.mark.parametrize(
    "shape",
    [[2**62, 2**62], [2**63 - 1], [2**31, 2**31, 2**31], [-1, 64], [3, -5]],
)
def test_huge_or_negative_shapes_are_refused_before_allocation(shape: list[int]) -> None:
    for datatype in ("FP32", "BYTES", "BOOL"):
        with pytest.raises(InvalidArgument, match="'x'"):
            codec.decode_infer_request(_raw_request("x", datatype, shape, b"\0" * 16))
        msg = pb.ModelInferRequest()
        msg.inputs.add(name="x", datatype=datatype, shape=shape)
        with pytest.raises(InvalidArgument, match="'x'"):
            codec.decode_infer_request(msg)


def test_zero_size_tensor_with_absurd_dimension() -> None:
    with pytest.raises(InvalidArgument, match="'x'"):
        codec.decode_infer_request(_raw_request("x", "FP32", [0, 2**63 - 1, 2**63 - 1], b""))
    ok = codec.decode_infer_request(_raw_request("x", "FP32", [0, 3], b""))
    assert ok.inputs["x"].shape == (0, 3)


def test_too_many_dimensions() -> None:
    with pytest.raises(InvalidArgument, match="dimensions"):
        codec.decode_infer_request(_raw_request("x", "FP32", [1] * 40, b"\0" * 4))


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (_bytes_raw([b"ab"])[:-1], 1, "declares 2 bytes but only 1 remain"),
        (struct.pack("<I", 2**32 - 1) + b"abcd", 1, "declares 4294967295 bytes"),
        (_bytes_raw([b"ab"]) + b"\x01", 1, "expected 6 bytes, got 7"),
        (_bytes_raw([b"ab"]) + b"\x01\x00", 2, "has no length prefix"),
        (_bytes_raw([b"ab"]), 3, "shape declares 3 BYTES elements"),
        (b"", 1, "shape declares 1 BYTES elements"),
    ],
)
def test_bytes_raw_lengths_are_checked(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        codec.decode_infer_request(_raw_request("x", "BYTES", [count], raw))


def test_typed_count_mismatch() -> None:
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="FP32", shape=[2, 2]).contents.fp32_contents.extend(
        [1.0, 2.0, 3.0]
    )
    with pytest.raises(
        InvalidArgument, match=r"expected 4 values in contents\.fp32_contents, got 3"
    ):
        codec.decode_infer_request(msg)


def test_typed_wrong_field_for_datatype() -> None:
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="FP32", shape=[2]).contents.int64_contents.extend([1, 2])
    with pytest.raises(InvalidArgument, match=r"contents\.int64_contents; use contents\.fp32"):
        codec.decode_infer_request(msg)


def test_typed_small_int_out_of_range() -> None:
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="INT8", shape=[2]).contents.int_contents.extend([1, 300])
    with pytest.raises(InvalidArgument, match=r"outside \[-128, 127\]"):
        codec.decode_infer_request(msg)


def test_missing_data_is_a_count_mismatch() -> None:
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="FP32", shape=[1, 64])
    with pytest.raises(InvalidArgument, match="expected 64 values"):
        codec.decode_infer_request(msg)


def test_structural_errors() -> None:
    msg = _raw_request("x", "FP32", [1], b"\0" * 4)
    msg.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidArgument, match="2 entries for 1 inputs"):
        codec.decode_infer_request(msg)

    msg = _raw_request("x", "FP32", [1], b"\0" * 4)
    msg.inputs.add(name="x", datatype="FP32", shape=[1])
    msg.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidArgument, match="given twice"):
        codec.decode_infer_request(msg)

    msg = _raw_request("x", "FP32", [1], b"\0" * 4)
    msg.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidArgument, match="send every input one way"):
        codec.decode_infer_request(msg)

    with pytest.raises(InvalidArgument, match="unknown datatype 'FP8'"):
        codec.decode_infer_request(_raw_request("x", "FP8", [1], b"\0"))

    with pytest.raises(InvalidArgument, match="has no name"):
        codec.decode_infer_request(_raw_request("", "FP32", [1], b"\0" * 4))

    msg = _raw_request("x", "FP32", [1], b"\0" * 4)
    msg.outputs.add(name="y")
    msg.outputs.add(name="y")
    with pytest.raises(InvalidArgument, match="twice"):
        codec.decode_infer_request(msg)


def test_bool_raw_nonzero_bytes_are_true() -> None:
    got = codec.decode_infer_request(_raw_request("x", "BOOL", [3], b"\x00\x01\x07"))
    assert got.inputs["x"].tolist() == [False, True, True]


def test_decoded_raw_input_is_zero_copy_and_read_only() -> None:
    raw = np.arange(6, dtype="<f4").tobytes()
    got = codec.decode_infer_request(_raw_request("x", "FP32", [2, 3], raw)).inputs["x"]
    assert not got.flags.writeable and got.dtype == np.float32
    assert got.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_string_bytes_outputs_are_utf8() -> None:
    arr = np.array(["héllo", b"raw"], dtype=object)
    out = codec.encode_infer_response(_response({"s": arr}), raw=True)
    assert out.raw_output_contents[0] == _bytes_raw(["héllo".encode(), b"raw"])
    out = codec.encode_infer_response(_response({"s": arr}), raw=False)
    assert list(out.outputs[0].contents.bytes_contents) == ["héllo".encode(), b"raw"]


def test_max_elements_per_tensor() -> None:
    raw = np.zeros(8, "<f4").tobytes()
    ok = codec.decode_infer_request(_raw_request("x", "FP32", [2, 4], raw), max_elements=8)
    assert ok.inputs["x"].shape == (2, 4)
    with pytest.raises(InvalidArgument, match="at most 7 elements per tensor"):
        codec.decode_infer_request(_raw_request("x", "FP32", [2, 4], raw), max_elements=7)
    msg = pb.ModelInferRequest()
    msg.inputs.add(name="x", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend([0] * 8)
    with pytest.raises(InvalidArgument, match="at most 7 elements"):
        codec.decode_infer_request(msg, max_elements=7)
