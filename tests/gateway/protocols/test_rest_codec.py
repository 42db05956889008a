"""The OIP REST codec alone: pure functions, checked against tritonclient's own encoder and
decoder where it has one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.protocols.oip import rest_codec as codec
from gateway.types import InferRequest, InferResponse
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument

th = pytest.importorskip("tritonclient.http")
from tritonclient.http._utils import _get_inference_request  # noqa: E402


def decode(
    body: bytes | str, header: int | None = None, max_elements: int | None = None
) -> tuple[InferRequest, codec.OutputOptions]:
    raw = body.encode() if isinstance(body, str) else body
    return codec.decode_infer_request(
        bytearray(raw),
        None if header is None else str(header),
        max_depth=64,
        max_elements=max_elements,
    )


def one(datatype: str, shape: list[int], data: object) -> str:
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    )


OK = '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}'
ARRAYS: dict[str, np.ndarray] = {
    "FP32": np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
    "FP16": np.array([[0.5, -1.25]], dtype=np.float16),
    "FP64": np.array([1e-300, 2.5]),
    "INT8": np.array([-128, 127], dtype=np.int8),
    "INT64": np.array([[-(2**63), 2**63 - 1]], dtype=np.int64),
    "UINT8": np.array([0, 255], dtype=np.uint8),
    "UINT64": np.array([2**64 - 1], dtype=np.uint64),
    "BOOL": np.array([[True, False, True]]),
    "BYTES": np.array([b"a", b"\xff\x00", b""], dtype=object),
}


@pytest.mark.parametrize("datatype", sorted(ARRAYS))
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_requests_decode_exactly(datatype: str, binary: bool) -> None:
    arr = ARRAYS[datatype]
    if datatype == "BYTES" and not binary:
        arr = np.array([b"a", b"bc"], dtype=object)  # JSON carries UTF-8 strings only
    inp = th.InferInput("x", list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    body, size = _get_inference_request(
        inputs=[inp], request_id="7", outputs=None, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )  # fmt: skip
    req, opts = decode(body, size)
    got = req.inputs["x"]
    assert got.shape == arr.shape and req.id == "7"
    if datatype == "BYTES":
        assert list(got.ravel()) == list(arr.ravel())
    else:
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)
    assert opts.binary_default  # tritonclient asks for binary outputs when it names none


def test_nested_data_and_options() -> None:
    body = json.dumps(
        {
            "id": "a",
            "parameters": {"binary_data_output": False, "custom": 3},
            "inputs": [
                {"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
        }
    )
    req, opts = decode(body)
    np.testing.assert_array_equal(req.inputs["x"], np.array([[1, 2], [3, 4]], np.int32))
    assert req.requested_outputs == ["y", "z"] and req.parameters["custom"] == 3
    assert opts.is_binary("y") and not opts.is_binary("z")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (one("INT8", [1], [128]), "outside [-128, 127]"),
        (one("UINT8", [1], [-1]), "outside [0, 255]"),
        (one("INT32", [1], [1.5]), "must be integers"),
        (one("BOOL", [1], [1]), "must be true/false"),
        (one("FP32", [1], [True]), "must be numbers"),
        (one("FP16", [1], [1e6]), "outside the FP16 range"),
        (one("INT64", [1], [2**70]), "must be integers"),
        (one("BYTES", [2], ["a", 1]), "must be strings"),
        (one("BYTES", [3], [["a"], ["b"]]), "holds 3 elements but 'data' has 2"),
        (one("FP32", [2, 2], [[1, 2], [3]]), "not a regular array"),
        (one("FP32", [0, 2**62, 2**62], []), "is not usable"),
        ('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', "no 'data'"),
        ('{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', "'name'"),
        ('{"inputs": [1]}', "must be an object"),
        ('{"inputs": [], "id": 1}', "non-empty"),
        (OK[:-1] + ', "id": 5}', "'id'"),
        (OK[:-1] + ', "outputs": 1}', "'outputs'"),
        (OK[:-1] + ', "outputs": [{"name": "y", "parameters": {"classification": 2}}]}',
         "classification"),
        ('{"inputs": [{"name":"x","datatype":"FP32","shape":[true],"data":[1]}]}', "'shape'"),
        ("[" * 100 + "]" * 100, "nests deeper than 64"),
        ('{"inputs": "\\ud800"}', "not valid JSON"),
    ],
)  # fmt: skip
def test_bad_requests_say_what_is_wrong(body: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode(body)


def test_depth_counts_brackets_outside_strings_only() -> None:
    strings = ["[" * 200, "]" * 200 + "[" * 10, '\\"[[[[']
    body = one("BYTES", [3], strings)
    req, _ = decode(body)
    assert req.inputs["x"][0] == b"[" * 200
    deep = (
        '{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["\\\\"]}], "p": '
        + "[" * 70
        + "]" * 70
        + "}"
    )
    with pytest.raises(InvalidArgument, match="deeper"):
        decode(deep)


def test_depth_of_large_bodies() -> None:
    # over 4 KiB the brackets are counted with numpy: same answers
    big = one("FP32", [2000], [0.5] * 2000)
    assert decode(big)[0].inputs["x"].shape == (2000,)
    deep = big[:-1] + ', "p": ' + "[" * 70 + "]" * 70 + "}"
    assert len(deep) > 4096
    with pytest.raises(InvalidArgument, match="deeper"):
        decode(deep)
    strings = one("BYTES", [50], ["[" * 100] * 50)  # brackets inside strings do not count
    assert decode(strings)[0].inputs["x"][0] == b"[" * 100


def test_element_limit() -> None:
    with pytest.raises(InvalidArgument, match="at most 10 elements"):
        decode(one("FP32", [3, 4], list(range(12))), max_elements=10)


def test_nan_literals_are_accepted() -> None:
    req, _ = decode(
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[NaN,Infinity,-Infinity]}]}'
    )
    x = req.inputs["x"]
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf


@pytest.mark.parametrize(
    ("header", "tail", "message"),
    [
        (-1, b"", "Inference-Header-Content-Length"),
        (10_000, b"", "Inference-Header-Content-Length"),
        (None, b"\x00" * 3, "expected 8 bytes, got 3"),
    ],
)
def test_binary_header_and_sizes(header: int | None, tail: bytes, message: str) -> None:
    doc = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 3},
                }
            ]
        }
    ).encode()
    size = len(doc) if header is None else header
    with pytest.raises(InvalidArgument, match=message):
        decode(doc + tail, size)


def test_bytes_lengths_never_read_past_the_buffer() -> None:
    raw = (1000).to_bytes(4, "little") + b"abc"
    doc = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    with pytest.raises(InvalidArgument, match="declares 1000 bytes"):
        decode(doc + raw, len(doc))
    doc2 = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "BYTES",
                    "shape": [1000],
                    "parameters": {"binary_data_size": 4},
                }
            ]
        }
    ).encode()
    with pytest.raises(InvalidArgument, match="1000 BYTES elements"):
        decode(doc2 + b"\x00" * 4, len(doc2))


def response(**outputs: np.ndarray) -> InferResponse:
    specs = [TensorSpec(name=n, datatype="FP32", shape=[-1]) for n in outputs]
    return InferResponse("m", "2", dict(outputs), specs, id="q")


def test_responses_read_by_tritonclient() -> None:
    outs: dict[str, np.ndarray] = {
        "f": np.array([[1.5, -2.0]], np.float32),
        "h": np.array([0.25], np.float16),
        "b": np.array([True, False]),
        "s": np.array([b"\xff", b"ok"], dtype=object),
        "i": np.array([[-3]], np.int64),
    }
    for binary in (True, False):
        opts = codec.OutputOptions(binary_default=binary, binary={"s": True})
        body, size = codec.encode_infer_response(response(**outs), opts)
        assert (size is not None) == True  # noqa: E712 - s is always binary here
        result = th.InferResult.from_response_body(body, header_length=size)
        for name, want in outs.items():
            got = result.as_numpy(name)
            if name == "s":
                assert list(got) == list(want)
            else:
                np.testing.assert_array_equal(got, want)
                assert got.dtype == want.dtype
        assert result.get_response()["model_version"] == "2"


def test_json_responses_policy() -> None:
    body, size = codec.encode_infer_response(
        response(y=np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)), codec.OutputOptions()
    )
    assert size is None and b'"data":[NaN,Infinity,-Infinity,1.0]' in body
    assert np.isnan(json.loads(body)["outputs"][0]["data"][0])
    strided = np.arange(8, dtype=np.float32).reshape(2, 4)[:, ::2]
    body, _ = codec.encode_infer_response(response(y=strided), codec.OutputOptions())
    assert json.loads(body)["outputs"][0]["data"] == [0, 2, 4, 6]
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        codec.encode_infer_response(
            response(s=np.array([b"\xff"], dtype=object)), codec.OutputOptions()
        )


def test_timeout_parameter() -> None:
    assert codec.timeout_parameter({}) is None
    assert codec.timeout_parameter({"timeout": 2_000_000}) == 2.0
    for bad in (-1, "1", True, float("nan")):
        with pytest.raises(InvalidArgument):
            codec.timeout_parameter({"timeout": bad})
