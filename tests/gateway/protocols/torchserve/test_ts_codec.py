"""TorchServe body conventions alone: JSON tensors, .npy (hostile headers), raw bytes."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from gateway.protocols.torchserve import codec
from model_store.signature import TensorSpec
from truce.errors import ErrorCode, InvalidArgument

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 3])
IDS = TensorSpec(name="ids", datatype="INT32", shape=[-1])
IMG = TensorSpec(name="image", datatype="BYTES", shape=[-1])


def body(doc: object, media: str = "application/json", specs: list[TensorSpec] | None = None):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return codec.decode_body(raw, media, specs or [X], max_depth=16, max_elements=1 << 20)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def test_json_forms() -> None:
    assert body([[1, 2, 3]])["x"].tolist() == [[1, 2, 3]]
    assert body({"data": [[1, 2, 3]]})["x"].dtype == np.float32
    both = body({"x": [[1, 2, 3]], "ids": [4]}, specs=[X, IDS])
    assert both["ids"].dtype == np.int32 and both["ids"].tolist() == [4]
    # curl -d sends form-urlencoded; JSON is still read
    assert body([[1, 2, 3]], "application/x-www-form-urlencoded")["x"].shape == (1, 3)


def test_npy_bodies_are_read_without_pickle_and_converted() -> None:
    arr = np.arange(6, dtype=np.float64).reshape(2, 3)  # np.save of Python floats: float64
    got = body(npy(arr), "application/octet-stream")["x"]
    assert got.dtype == np.float32 and got.tolist() == arr.tolist()
    fortran = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert body(npy(fortran), "application/x-npy")["x"].tolist() == fortran.tolist()
    with pytest.raises(InvalidArgument, match="dtype object"):
        body(_npy_header("|O", (1,)) + b"\x80\x04", "application/x-npy")


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_hostile_npy_headers_are_refused_before_allocating() -> None:
    huge = _npy_header("<f4", (1 << 40, 1 << 20)) + b"\x00" * 16
    with pytest.raises(InvalidArgument, match="at most"):
        body(huge, "application/x-npy")
    short = _npy_header("<f4", (2, 3)) + b"\x00" * 20
    with pytest.raises(InvalidArgument, match="expected 24 bytes of data, got 20"):
        body(short)
    with pytest.raises(InvalidArgument, match=r"not a valid \.npy"):
        body(b"\x93NUMPY\x01\x00\xff\xff{garbage", "application/x-npy")


def test_raw_bytes_for_a_bytes_input() -> None:
    jpeg = b"\xff\xd8\xff\xe0 not really a jpeg"
    got = body(jpeg, "image/jpeg", [IMG])["image"]
    assert got.shape == (1,) and got[0] == jpeg
    assert body(["a", "b"], specs=[IMG])["image"].tolist() == [b"a", b"b"]


@pytest.mark.parametrize(
    ("doc", "specs", "fragment"),
    [
        (b"", [X], "empty"),
        (b"[[1, 2", [X], "not valid JSON"),
        ({"data": [[1, 2, 3]]}, [X, IDS], "several inputs"),
        ({"nope": [1]}, [X], "unexpected input 'nope'"),
        ([[1, "a", 3]], [X], "must be numbers"),
        ([[1, 2], [3]], [X], "regular array"),
        (npy(np.ones(3, np.float32)), [X, IDS], "several inputs"),
    ],
)
def test_bad_bodies(doc: object, specs: list[TensorSpec], fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        body(doc, "", specs)


def test_values_out_of_range_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="outside"):
        body(npy(np.array([1 << 40], np.int64)), specs=[IDS])


def test_grpc_input_map() -> None:
    data = {"data": json.dumps([[1, 2, 3]]).encode()}
    got = codec.decode_input_map(data, [X], max_depth=16)
    assert got["x"].tolist() == [[1, 2, 3]]
    per_input = {"x": npy(np.ones((1, 3), np.float32)), "ids": b"[5]"}
    got = codec.decode_input_map(per_input, [X, IDS], max_depth=16)
    assert got["ids"].tolist() == [5]
    with pytest.raises(InvalidArgument, match="no input"):
        codec.decode_input_map({}, [X], max_depth=16)
    with pytest.raises(InvalidArgument, match="unexpected input 'zz'"):
        codec.decode_input_map({"zz": b"[1]"}, [X], max_depth=16)
    with pytest.raises(InvalidArgument, match="either"):
        codec.decode_input_map({"data": b"[1]", "zz": b"1"}, [X], max_depth=16)


def test_responses_and_error_documents() -> None:
    one = codec.encode_outputs({"y": np.array([[1.0, np.nan]], np.float32)})
    assert one == b"[[1.0,NaN]]"
    two = json.loads(codec.encode_outputs({"a": np.array([1]), "b": np.array([b"t"], object)}))
    assert two == {"a": [1], "b": ["t"]}
    err = json.loads(codec.error_body(404, ErrorCode.NOT_FOUND, "Model not found: m"))
    assert err == {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: m"}
