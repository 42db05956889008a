"""Truce itself for the benchmark: a fresh store with the bench models, then ``truce serve``.

Models are registered with ``truce models register`` (the serving config comes from
``TruceConfig``: batching and instances), and the gateway is started on loopback with
ephemeral ports, exactly as a user would run it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loadtests.bench.procs import ServerProcess, free_port, http_ok
from truce.errors import Unavailable

START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class TruceConfig:
    """``max_batch_size`` > 1 turns dynamic batching on; ``instances`` parallel model copies."""

    max_batch_size: int = 1
    max_queue_delay_ms: float = 0.0
    instances: int = 1


class TruceServer:
    """``truce serve`` on loopback serving ``models`` (name -> TorchScript file).

    ``inputs`` gives each model's input as ``NAME:DTYPE:SHAPE`` (TorchScript files do not
    record their signature).
    """

    kind = "truce"

    def __init__(
        self, work: Path, models: dict[str, Path], config: TruceConfig, inputs: dict[str, str]
    ) -> None:
        self.work, self.models, self.config, self.inputs = work, models, config, inputs
        self.port, self.grpc_port, self.admin_port = free_port(), free_port(), free_port()
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _truce(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "truce", *args]

    def _register(self, store: Path) -> None:
        c = self.config
        for name, model in self.models.items():
            argv = self._truce(
                "models",
                "register",
                str(model),
                "--name",
                name,
                "--store",
                str(store),
                "--input",
                self.inputs[name],
                "--max-batch-size",
                str(c.max_batch_size),
                "--max-queue-delay-ms",
                f"{c.max_queue_delay_ms:g}",
                "--instances",
                str(c.instances),
            )
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise Unavailable(f"registering {name} failed: {done.stderr.strip()[-400:]}")

    def _ready(self) -> bool:
        return http_ok(f"{self.url}/v2/health/ready") and all(
            http_ok(f"{self.url}/v2/models/{name}/ready") for name in self.models
        )

    def start(self) -> TruceServer:
        shutil.rmtree(self.work, ignore_errors=True)
        store = self.work / "store"
        store.mkdir(parents=True)
        self._register(store)
        argv = self._truce(
            "serve",
            "--store",
            str(store),
            "--host",
            "127.0.0.1",
            "--http-port",
            str(self.port),
            "--grpc-port",
            str(self.grpc_port),
            "--admin-port",
            str(self.admin_port),
        )
        self.process = ServerProcess("truce", argv, log=self.work / "truce.out").start()
        try:
            self.process.wait_ready(self._ready, START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
