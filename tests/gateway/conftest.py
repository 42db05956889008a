"""Gateway servers for tests: the real ``truce serve`` process, or an in-process one.

Reusable by every protocol's tests (REST, gRPC, contract):

``GatewayProcess(store_root, tmp_dir, env=..., args=...)`` — the real CLI in a child process on
ephemeral loopback ports (``--ports-file``). As a context manager it starts, waits until
``/v2/health/ready`` answers 200 and stops with SIGTERM. Attributes: ``http`` (``host:port``
for ``tritonclient.http``), ``http_url``, ``grpc`` (``host:port`` for ``tritonclient.grpc``),
``admin_url``, ``token`` (admin bearer token), ``pid``; methods ``stop(sig)`` -> exit code,
``log()`` -> its output so far.

``InProcessGateway(store_root, behavior, **settings)`` — ``GatewayServer`` on its own event loop
in a thread, with ``tests.gateway.fakes.FakeRuntime`` instead of real frameworks (no framework
imports: fast). Same attributes; ``stop()`` drains like SIGTERM does.

Fixtures: ``zoo_store`` (session): a store with the tiny zoo models of every served format,
named after their ``model_files`` key (``onnx_mlp``, ``keras_mlp``, ...) with the signatures of
the runtime conformance suite; ``gateway_process`` (module): ``truce serve`` over it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.fakes import Behavior, factory

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-0123456789abcdef"
#: formats served by the e2e tests, with the extra modules each needs in the server process
E2E_KEYS = {
    "torchscript_mlp": ("torch",),
    "torch_export_mlp": ("torch",),
    "onnx_mlp": ("onnxruntime",),
    "onnx_cnn": ("onnxruntime",),
    "keras_mlp": ("keras",),
    "savedmodel_mlp": ("tensorflow",),
    "tflite_mlp": ("ai_edge_litert",),
}


class _Addresses:
    """The listener addresses of a running gateway, from its bound ``ports``."""

    ports: dict[str, Any]

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"


class GatewayProcess(_Addresses):
    """``truce serve`` in a child process (see the module docstring)."""

    def __init__(
        self,
        store: Path,
        tmp: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        ready_timeout_s: float = 240.0,
    ) -> None:
        self.store, self.tmp = store, tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.ports_file = tmp / "ports.json"
        self.log_path = tmp / "serve.log"
        self.token = TOKEN
        self.extra_env = env or {}
        self.args = args
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, Any] = {}

    def start(self) -> GatewayProcess:
        self.ports_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TRUCE_ADMIN_TOKEN": self.token,
            "TRUCE_ADMIN_TOKEN_FILE": str(self.tmp / "admin-token"),
            "TRUCE_RELOAD_INTERVAL_S": "0.2",
            **self.extra_env,
        }
        cmd = [
            sys.executable, "-m", "truce", "serve", "--store", str(self.store),
            "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
            "--admin-port", "0", "--ports-file", str(self.ports_file), *self.args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=log)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        end = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(
                    f"truce serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            if self.ports_file.exists():
                self.ports = json.loads(self.ports_file.read_text())
                try:
                    if httpx.get(f"{self.http_url}/v2/health/ready", timeout=5).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        pytest.fail(f"truce serve was not ready in time:\n{self.log()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit code (killed after ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InProcessGateway(_Addresses):
    """``GatewayServer`` with fake runtimes on a thread (see the module docstring)."""

    def __init__(self, store: Path, behavior: Behavior | None = None, **settings: Any) -> None:
        from gateway.server import GatewayServer
        from gateway.settings import Settings

        defaults: dict[str, Any] = {
            "store": store,
            "http_port": 0,
            "grpc_port": 0,
            "admin_port": 0,
            "admin_token": TOKEN,
            "reload_interval_s": 0.05,
        }
        self.settings = Settings(**{**defaults, **settings})
        self.behavior = behavior or Behavior()
        self.token = TOKEN
        self.server = GatewayServer(self.settings, runtime_factory=factory(self.behavior))
        self.loop = asyncio.new_event_loop()
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.loop.run_until_complete(self.server.run(install_signals=False))

    def __enter__(self) -> InProcessGateway:
        self.thread.start()
        end = time.monotonic() + 60
        while not (self.server.ports and self.server.registry.started):
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the in-process gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self, *, fast: bool = False, timeout: float = 30.0) -> int | None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(lambda: self.server.request_stop(fast=fast))
            self.thread.join(timeout)
        return self.exit_code

    def __exit__(self, *exc: object) -> None:
        self.stop(fast=True)
        if not self.thread.is_alive():
            self.loop.close()

    @property
    def ports(self) -> dict[str, Any]:
        return self.server.ports


@pytest.fixture(scope="session")
def zoo_store(model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the zoo models of every served format (see the module docstring)."""
    from model_store.store import ModelStore
    from tests.gateway.runtimes.test_conformance import CASES

    root = tmp_path_factory.mktemp("zoo-store") / "store"
    store = ModelStore(root)
    cases = {c.key: c for c in CASES}
    for key in E2E_KEYS:
        case = cases[key]
        store.add_version(key, model_files[key], format=case.format, signature=case.signature)
    return root


@pytest.fixture(scope="module")
def gateway_process(
    zoo_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """``truce serve`` over ``zoo_store``; every model ready."""
    for modules in E2E_KEYS.values():
        for module in modules:
            pytest.importorskip(module)
    with GatewayProcess(zoo_store, tmp_path_factory.mktemp("serve")) as gw:
        yield gw
