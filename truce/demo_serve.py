"""The serving half of ``make demo``: start ``truce serve`` on the demo store and call it.

Each call is printed as the command a user would type (curl, or a few lines of Python with the
client they already have), then made for real, so every snippet shown has just worked.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

START_TIMEOUT_S = 180.0


@contextmanager
def gateway(store: Path, workdir: Path) -> Iterator[dict[str, Any]]:
    """Run ``truce serve`` on free ports until the block ends; yields its ports and token."""
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "TRUCE_ADMIN_TOKEN": token, "TRUCE_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "truce", "serve", "--store", str(store)]
    cmd += ["--http-port", "0", "--grpc-port", "0", "--admin-port", "0"]
    print(f"\n$ truce serve --store {store}   # the demo uses free ports instead of 8080-8082")
    log = (workdir / "gateway.log").open("wb")
    proc = subprocess.Popen([*cmd, "--ports-file", str(ports_file)], env=env, stderr=log)
    try:
        ports = _wait_ready(proc, ports_file)
        yield {**ports, "token": token}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(f"\n== gateway stopped (SIGTERM; exit code {proc.returncode}); log: {log.name}")


def _wait_ready(proc: subprocess.Popen[bytes], ports_file: Path) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"truce serve exited with code {proc.returncode}; see its log")
        if ports_file.exists():
            ports: dict[str, Any] = json.loads(ports_file.read_text())
            try:
                if httpx.get(f"http://127.0.0.1:{ports['http']}/v2/health/ready").is_success:
                    return ports
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise SystemExit(f"truce serve was not ready after {START_TIMEOUT_S:.0f} s; see its log")


def show(title: str, snippet: str) -> None:
    print(f"\n== {title}\n{snippet.strip()}")


def call_everything(ports: dict[str, Any]) -> None:
    """Call the running gateway through each API with the clients people already use."""
    import httpx

    http, grpc_port = ports["http"], ports["grpc"]
    base = f"http://127.0.0.1:{http}"
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32"}]}
    body["inputs"][0]["data"] = x.round(3).ravel().tolist()

    show(
        "Open Inference Protocol v2, REST (curl)",
        f"""
$ curl {base}/v2/models/mlp
$ curl -X POST {base}/v2/models/mlp/versions/stable/infer -d '{{"inputs": [{{"name": "input", \\
    "shape": [1, 64], "datatype": "FP32", "data": [0.126, -0.132, ...]}}]}}'""",
    )
    meta = httpx.get(f"{base}/v2/models/mlp").json()
    print(f"metadata: versions {meta['versions']}, inputs {meta['inputs']}")
    out = httpx.post(f"{base}/v2/models/mlp/versions/stable/infer", json=body).json()
    print(
        f"model_version {out['model_version']}, {out['outputs'][0]['name']} = "
        f"{np.round(out['outputs'][0]['data'][:4], 4).tolist()}..."
    )

    out_name = meta["outputs"][0]["name"]
    show(
        "the same through tritonclient (HTTP, binary tensors by default)",
        f"""
>>> import tritonclient.http as httpclient
>>> c = httpclient.InferenceServerClient("127.0.0.1:{http}")
>>> i = httpclient.InferInput("input", [1, 64], "FP32"); i.set_data_from_numpy(x)
>>> c.infer("mlp", [i]).as_numpy("{out_name}")""",
    )
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    i = httpclient.InferInput("input", [1, 64], "FP32")
    i.set_data_from_numpy(x)
    y = c.infer("mlp", [i]).as_numpy(out_name)
    assert y is not None, f"no output {out_name!r} in the answer"
    head = [round(float(v), 4) for v in y[0, :4]]
    print(f"mlp:latest (TFLite) {out_name} {y.shape} {y.dtype}: {head}...")

    show(
        "tritonclient over gRPC",
        f"""
>>> import tritonclient.grpc as grpcclient
>>> c = grpcclient.InferenceServerClient("127.0.0.1:{grpc_port}")
>>> i = grpcclient.InferInput("input", [1, 64], "FP32"); i.set_data_from_numpy(x)
>>> c.infer("resnet", ...)  # the ONNX CNN, an image batch [2, 3, 64, 64]""",
    )
    import tritonclient.grpc as grpcclient

    gc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    img = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    gi = grpcclient.InferInput("input", list(img.shape), "FP32")
    gi.set_data_from_numpy(img)
    res = gc.infer("resnet", [gi])
    name = res.get_response().outputs[0].name
    print(
        f"resnet {name}: shape {res.as_numpy(name).shape}, top-1 "
        f"{res.as_numpy(name).argmax(axis=1).tolist()}"
    )
    gc.close()

    kx = np.random.default_rng(2).random((1, 64, 64, 3)).astype(np.float32)
    show(
        "TensorFlow Serving's REST API, for the Keras model",
        f"""
$ curl -X POST {base}/v1/models/keras_cnn:predict -d '{{"instances": [[[[0.27, ...]]]]}}'""",
    )
    tf = httpx.post(f"{base}/v1/models/keras_cnn:predict", json={"instances": kx.tolist()})
    print(f"predictions: {np.round(tf.json()['predictions'][0][:4], 4).tolist()}...")

    show(
        "TorchServe's inference API, same PyTorch model",
        f"""
$ curl {base}/ping
$ curl -X POST {base}/predictions/mlp -H 'Content-Type: application/json' -d '[[0.126, ...]]'""",
    )
    print(httpx.get(f"{base}/ping").json())
    ts = httpx.post(f"{base}/predictions/mlp", json=x.tolist()).json()
    print(f"prediction: {np.round(ts[0][:4], 4).tolist()}...")

    show(
        "bad input gets a 4xx that says what to fix",
        f"""
$ curl -X POST {base}/v2/models/mlp/infer -d '{{"inputs": [{{"name": "input", "shape": [1, 3], \\
    "datatype": "FP32", "data": [1, 2, 3]}}]}}'""",
    )
    bad = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    r = httpx.post(f"{base}/v2/models/mlp/infer", json=bad)
    print(f"HTTP {r.status_code} {r.json()}")

    admin = f"http://127.0.0.1:{ports['admin']}"
    show(
        "the admin listener (loopback, bearer token)",
        f"""
$ curl -X POST -H "Authorization: Bearer $TRUCE_ADMIN_TOKEN" {admin}/v2/repository/index""",
    )
    index = httpx.post(
        f"{admin}/v2/repository/index", headers={"Authorization": f"Bearer {ports['token']}"}
    ).json()
    for row in index:
        print(f"  {row['name']}:{row['version']}  {row['state']}")
    metrics = httpx.get(f"{base}/metrics").text
    count = sum(1 for line in metrics.splitlines() if line.startswith("truce_requests_total"))
    print(f"\n$ curl {base}/metrics   # Prometheus; {count} truce_requests_total series so far")
