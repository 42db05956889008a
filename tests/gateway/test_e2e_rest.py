"""``truce serve`` end to end over REST: tritonclient.http (JSON and binary) and httpx against a
model of every served format from both frameworks, outputs compared with the framework."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from model_store.signature import example_inputs
from tests.gateway.conftest import E2E_KEYS, GatewayProcess
from tests.gateway.runtimes.test_conformance import CASES

th = pytest.importorskip("tritonclient.http")
CASE = {c.key: c for c in CASES}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(gateway_process: GatewayProcess) -> Any:
    return th.InferenceServerClient(gateway_process.http, network_timeout=120)


@pytest.mark.parametrize("key", list(E2E_KEYS))
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_outputs_equal_the_framework(client: Any, key: str, binary: bool) -> None:
    case = CASE[key]
    spec_in, spec_out = case.signature.inputs[0], case.signature.outputs[0]
    x = example_inputs(case.signature.inputs, batch=3, seed=11)[spec_in.name]
    inp = th.InferInput(spec_in.name, list(x.shape), spec_in.datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    out = th.InferRequestedOutput(spec_out.name, binary_data=binary)
    result = client.infer(key, [inp], outputs=[out])
    got = result.as_numpy(spec_out.name)
    (want,) = case.reference({spec_in.name: x})
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=max(case.atol, 1e-6))


@pytest.mark.parametrize("key", list(E2E_KEYS))
def test_metadata_and_health(client: Any, key: str) -> None:
    meta = client.get_model_metadata(key)
    case = CASE[key]
    assert meta["name"] == key and meta["versions"] == ["1"]
    assert meta["inputs"] == [s.model_dump() for s in case.signature.inputs]
    assert meta["outputs"] == [s.model_dump() for s in case.signature.outputs]
    assert client.is_model_ready(key) and client.is_model_ready(key, "1")
    assert client.get_model_metadata(key, "1") == meta


def test_server_metadata_and_metrics(client: Any, gateway_process: GatewayProcess) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    text = httpx.get(f"{gateway_process.http_url}/metrics", timeout=30).text
    for key in E2E_KEYS:
        assert f'truce_model_state{{model="{key}",state="READY",version="1"}} 1.0' in text


def test_model_errors_are_400_and_the_server_stays_alive(
    gateway_process: GatewayProcess, client: Any
) -> None:
    url = f"{gateway_process.http_url}/v2/models/onnx_cnn/infer"
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8],
                        "data": [0.0] * 192}]}  # fmt: skip
    r = httpx.post(url, json=body, timeout=60)
    # the signature allows any batch but not this image size: refused before the model runs
    assert r.status_code == 400 and "expected [-1, 3, 64, 64]" in r.json()["error"]
    assert client.is_server_live()
    x = np.zeros((1, 3, 64, 64), np.float32)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    assert client.infer("onnx_cnn", [inp]).as_numpy("output").shape == (1, 10)
