"""Exported bundles on an emulated Raspberry Pi 4 (aarch64 Python under qemu-user).

``edge/pi/setup_pi_root.sh`` builds the arm64 root and the aarch64 ``ai-edge-litert`` once
into ``build/pi-root`` (about 30 s to 2 min; cached). Outputs on the "Pi" must equal the
gateway's for the same inputs, within the fp32 parity tolerance.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.runtimes import RuntimeSpec, open_runtime
from model_store.store import ModelStore
from tests.edge.conftest import REPO, build_test_bundle

pytestmark = pytest.mark.slow

PI_ROOT = REPO / "build" / "pi-root"


@pytest.fixture(scope="session")
def pi_python() -> Path:
    done = subprocess.run(
        ["bash", str(REPO / "edge/pi/setup_pi_root.sh"), str(PI_ROOT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode == 3:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-3000:]
    return PI_ROOT / "run-python"


def _pi(
    python: Path, bundle: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(python), "-m", "edge.runner", *args],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _gateway(store: ModelStore, name: str, x: np.ndarray) -> np.ndarray:
    m = store.manifest(name, 1)
    rt = open_runtime(
        RuntimeSpec(
            artifact=store.version_dir(name, 1) / m.artifact, format=m.format, signature=m.signature
        )
    )
    rt.load_blocking()
    try:
        return next(iter(rt.predict_blocking({m.signature.inputs[0].name: x}).values()))
    finally:
        rt.unload_blocking()


def test_pi_matches_gateway(pi_python: Path, pi_exports: dict[str, Any], tmp_path: Path) -> None:
    store = ModelStore(pi_exports["store"])
    x = np.random.default_rng(11).standard_normal((4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for key, name in (("torch", "tmlp"), ("keras", "kmlp")):
        bundle = pi_exports["bundles"][key]
        out = tmp_path / f"{key}.npy"
        done = _pi(
            pi_python, bundle, "run", ".", "--input", str(tmp_path / "x.npy"), "--output", str(out)
        )
        assert done.returncode == 0, done.stderr[-2000:]
        np.testing.assert_allclose(
            np.load(out), _gateway(store, name, x), rtol=1e-4, atol=1e-5, err_msg=key
        )
    bench = _pi(pi_python, pi_exports["bundles"]["keras"], "bench", ".", "--runs", "10", "--json")
    assert bench.returncode == 0, bench.stderr[-2000:]
    assert json.loads(bench.stdout)["latency_ms"]["p50"] > 0


def test_pi_serves_oip(pi_python: Path, pi_exports: dict[str, Any]) -> None:
    store = ModelStore(pi_exports["store"])
    bundle = pi_exports["bundles"]["torch"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [str(pi_python), "-m", "edge.runner", "serve", ".", "--port", "0", "--quiet"],
        cwd=bundle,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.search(r":(\d+) ", proc.stdout.readline())
        assert m, proc.stderr.read() if proc.stderr else ""
        x = np.random.default_rng(12).standard_normal((2, 64)).astype(np.float32)
        name = store.manifest("tmlp", 2).signature.inputs[0].name
        body = {
            "inputs": [
                {"name": name, "shape": [2, 64], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=60)
        conn.request(
            "POST", "/v2/models/tmlp/infer", json.dumps(body), {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        res = json.loads(resp.read())
        assert resp.status == 200, res
        out = res["outputs"][0]
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, _gateway(store, "tmlp", x), rtol=1e-4, atol=1e-5)
        conn.request("POST", "/v2/models/tmlp/infer", b"{", {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400 and "not valid JSON" in json.loads(resp.read())["error"]
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()


def test_pi_refuses_tampered_and_checks_signatures(
    pi_python: Path, tflite_mlp: Path, signing_key: tuple[Path, Path], tmp_path: Path
) -> None:
    """The Pi has no ``cryptography``: signatures verify with the pure-Python Ed25519."""
    key, pub = signing_key
    probe = subprocess.run([str(pi_python), "-c", "import cryptography"], capture_output=True)
    assert probe.returncode != 0  # so the pure-Python verifier is what runs below
    signed = build_test_bundle(tmp_path / "signed", tflite_mlp, sign_key=key)
    done = _pi(pi_python, signed, "run", ".", "--example", "--trusted-key", str(pub), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    tampered = tmp_path / "tampered"
    shutil.copytree(signed, tampered)
    meta = json.loads((tampered / "bundle.json").read_text())
    meta["target"] = "ios"
    (tampered / "bundle.json").write_text(json.dumps(meta))
    done = _pi(pi_python, tampered, "verify", ".")
    assert done.returncode == 3 and "signature does not verify" in done.stderr
