"""``truce serve`` lifecycle end to end (ONNX models only, so the process starts quickly):
hot reload, failed loads, the admin listener, SIGTERM under load."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.store import ModelStore
from tests.gateway.conftest import GatewayProcess
from tests.gateway.runtimes.test_conformance import CASES

pytest.importorskip("onnxruntime")
th = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.slow
SIG = {c.key: c.signature for c in CASES}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def store(tmp_path: Path, model_files: dict[str, Path]) -> ModelStore:
    s = ModelStore(tmp_path / "store")
    s.add_version("mlp", model_files["onnx_mlp"], format="onnx", signature=SIG["onnx_mlp"])
    s.add_version("cnn", model_files["onnx_cnn"], format="onnx", signature=SIG["onnx_cnn"])
    s.add_version("broken", model_files["onnx_mlp"], format="onnx", signature=SIG["onnx_mlp"])
    (s.version_dir("broken", 1) / "model.onnx").write_bytes(b"tampered after registration")
    return s


def mlp_ok(gw: GatewayProcess, version: str | None = None) -> int:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.1] * 64}]}
    path = "/v2/models/mlp" + (f"/versions/{version}" if version else "") + "/infer"
    return httpx.post(gw.http_url + path, json=body, timeout=60).status_code


def test_failed_loads_hot_reload_and_admin(
    store: ModelStore, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    with GatewayProcess(store.root, tmp_path / "gw") as gw:
        auth = {"authorization": f"Bearer {gw.token}"}
        rows = httpx.post(f"{gw.admin_url}/v2/repository/index", headers=auth).json()
        broken = next(r for r in rows if r["name"] == "broken")
        assert broken["state"] == "FAILED" and "integrity" in broken["reason"]
        assert str(store.root) not in broken["reason"]
        assert httpx.get(f"{gw.http_url}/v2/models/broken/ready").status_code == 503
        tensor = {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}
        r = httpx.post(f"{gw.http_url}/v2/models/broken/infer", json={"inputs": [tensor]})
        assert r.status_code == 400 and "failed to load" in r.json()["error"]
        assert mlp_ok(gw) == 200  # the others keep serving

        # hot reload: a new version is served without a restart, the old one drained
        store.add_version("mlp", model_files["onnx_mlp"], format="onnx", signature=SIG["onnx_mlp"])
        meta = f"{gw.http_url}/v2/models/mlp"
        wait_for(lambda: httpx.get(meta).json().get("versions") == ["2"], "mlp:2 to be served")
        assert mlp_ok(gw, "2") == 200 and mlp_ok(gw) == 200
        wait_for(lambda: mlp_ok(gw, "1") == 404, "mlp:1 to be retired")

        # an alias brings an older version back, set through the admin listener
        r = httpx.put(f"{gw.admin_url}/v2/repository/models/mlp/aliases/stable", headers=auth,
                      json={"version": 1}, timeout=60)  # fmt: skip
        assert r.status_code == 200
        assert mlp_ok(gw, "stable") == 200 and mlp_ok(gw, "1") == 200

        # a removed version disappears
        store.remove_alias("mlp", "stable")
        store.remove("mlp", 2)
        wait_for(lambda: mlp_ok(gw, "2") == 404, "mlp:2 to be removed")
        assert mlp_ok(gw) == 200

        # a repaired model is loaded on request
        shutil.copy(model_files["onnx_mlp"], store.version_dir("broken", 1) / "model.onnx")
        r = httpx.post(f"{gw.admin_url}/v2/repository/models/broken/load", headers=auth,
                       timeout=60)  # fmt: skip
        assert r.status_code == 200
        assert httpx.get(f"{gw.http_url}/v2/models/broken/ready").status_code == 200
        assert gw.stop() == 0
        assert gw.token not in gw.log()  # the admin token is never logged
        assert '"listener":"admin"' in gw.log()  # but its requests are


def test_sigterm_under_load_finishes_accepted_requests(store: ModelStore, tmp_path: Path) -> None:
    env = {"TRUCE_SHUTDOWN_DELAY_S": "1"}
    gw = GatewayProcess(store.root, tmp_path / "gw", env=env).start()
    x = np.zeros((8, 3, 64, 64), np.float32)
    tensor = {"name": "input", "datatype": "FP32", "shape": list(x.shape)}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = json.dumps({"inputs": [tensor]}).encode()
    body, headers = header + x.tobytes(), {"inference-header-content-length": str(len(header))}
    url = f"{gw.http_url}/v2/models/cnn/infer"
    outcomes: list[tuple[float, float, int | str]] = []  # (sent, done, status or failure)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status: int | str = c.post(url, content=body, headers=headers).status_code
                except httpx.ConnectError:
                    return  # the listener has closed: nothing was accepted
                except httpx.TransportError as exc:
                    status = type(exc).__name__  # an accepted request that broke: a failure
                outcomes.append((sent, time.monotonic(), status))
                if status == 503:
                    return  # like a load balancer: a draining server gets no more traffic

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(outcomes) >= 8, "the load to run")
        gw.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        signalled = time.monotonic()
        ready = httpx.get(f"{gw.http_url}/v2/health/ready", timeout=5).status_code
        assert ready == 503  # at once, while the listeners still answer
        assert httpx.get(f"{gw.http_url}/v2/health/live", timeout=5).status_code == 200
        assert gw.proc.wait(60) == 0  # type: ignore[union-attr]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        gw.stop(signal.SIGKILL)
    assert {status for _, _, status in outcomes} <= {200, 503}, outcomes
    # requests on the wire at SIGTERM were either accepted (and completed) or refused with 503
    in_flight = [s for sent, done, s in outcomes if sent < signalled < done]
    assert 200 in in_flight, "a request in flight at SIGTERM must complete"
    assert any(s == 503 for sent, _, s in outcomes if sent > signalled)  # refused while draining
    log = gw.log()
    assert "received SIGTERM: draining" in log and "stopped" in log


def test_port_in_use_is_a_clear_error(store: ModelStore, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "truce", "serve", "--store", str(store.root),
             "--http-port", str(port), "--grpc-port", "0", "--admin-port", "0"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**__import__("os").environ, "TRUCE_ADMIN_TOKEN_FILE": str(tmp_path / "t")},
        )  # fmt: skip
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
