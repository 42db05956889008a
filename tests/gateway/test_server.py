"""The server wiring in process: REST, gRPC and admin in one loop; draining on stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.store import ModelStore
from tests.gateway.conftest import InProcessGateway
from tests.gateway.fakes import Behavior, add_fake_version

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    s = ModelStore(tmp_path / "store")
    add_fake_version(s, "double")
    return s


def test_grpc_is_served_by_the_same_process(store: ModelStore) -> None:
    tg = pytest.importorskip("tritonclient.grpc")
    with InProcessGateway(store.root) as gw:
        client = tg.InferenceServerClient(gw.grpc)
        assert client.is_server_ready() and client.is_model_ready("double")
        inp = tg.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(np.ones((2, 4), np.float32))
        out = client.infer("double", [inp]).as_numpy("y")
        np.testing.assert_array_equal(out, np.full((2, 4), 2.0, np.float32))
        metrics = httpx.get(f"{gw.http_url}/metrics").text
        assert 'protocol="grpc"' in metrics
        client.close()


def test_stop_drains_in_flight_requests(store: ModelStore) -> None:
    gate = threading.Event()
    gw = InProcessGateway(store.root, Behavior(gate=gate), shutdown_delay_s=0.5)
    with gw:
        results: list[int] = []
        url = f"{gw.http_url}/v2/models/double/infer"
        t = threading.Thread(target=lambda: results.append(httpx.post(url, json=BODY).status_code))
        t.start()
        time.sleep(0.2)  # in flight, held by the gate
        gw.loop.call_soon_threadsafe(gw.server.request_stop)
        time.sleep(0.1)
        r = httpx.get(f"{gw.http_url}/v2/health/ready")
        assert r.status_code == 503 and r.headers["connection"] == "close"
        assert httpx.post(url, json=BODY).status_code == 503  # new work is refused
        gate.set()
        t.join(30)
        assert results == [200]
        gw.thread.join(30)
        assert gw.exit_code == 0
