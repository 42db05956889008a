"""The server variants the benchmark knows: their configuration, protocols and description.

Each peer runs the configuration its documentation recommends for a small CPU machine; the
description below is copied into BENCHMARKS.md so every number says what produced it.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loadtests.bench.peer_servers import MLServer, MLServerConfig, TorchServe, TorchServeConfig
from loadtests.bench.procs import ServerProcess, free_port
from loadtests.bench.truce_server import TruceConfig, TruceServer


class BenchServer(Protocol):
    kind: str

    @property
    def url(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


class FloorServer:
    """The floors: ``floor_app`` under uvicorn (uvloop + httptools, no access log) for HTTP,
    ``grpc_floor`` for gRPC. Same request bodies, no model."""

    kind = "floor"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port, self.grpc_port = free_port(), free_port()
        self.process: ServerProcess | None = None
        self.grpc_process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> FloorServer:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "loadtests.bench.floor_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        self.process = ServerProcess("floor", argv, log=self.work / "floor.out").start()
        grpc_argv = [
            sys.executable,
            "-m",
            "loadtests.bench.grpc_floor",
            "--port",
            str(self.grpc_port),
        ]
        self.grpc_process = ServerProcess(
            "grpc-floor", grpc_argv, log=self.work / "grpc-floor.out"
        ).start()
        try:
            self.process.wait_ready(self._answers, 60)
            self.grpc_process.wait_ready(lambda: _port_open(self.grpc_port), 60)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        """Any HTTP answer means it is up (it answers 400 to a GET's empty body)."""
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(self.url, timeout=1)  # noqa: S310 (loopback URL)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def stop(self) -> None:
        for process in (self.process, self.grpc_process):
            if process is not None:
                process.stop()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str
    config: Any
    protocols: tuple[str, ...]
    description: str


TRUCE_PROTOCOLS = ("oip-rest", "oip-rest-binary", "oip-grpc")
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "truce", "truce", TruceConfig(), TRUCE_PROTOCOLS, "truce serve, 1 instance, no batching"
        ),
        Variant(
            "truce-batch",
            "truce",
            TruceConfig(max_batch_size=32, max_queue_delay_ms=0.0),
            TRUCE_PROTOCOLS,
            "truce serve, 1 instance, dynamic batching up to 32, no added delay (the default)",
        ),
        Variant(
            "floor",
            "floor",
            None,
            ("oip-rest", "oip-grpc"),
            "no model: a bare ASGI app under uvicorn that only parses the JSON body, and a bare "
            "grpc.aio server that only parses the ModelInferRequest",
        ),
        Variant(
            "torchserve",
            "torchserve",
            TorchServeConfig(workers=1, batch_size=1),
            ("torchserve-rest",),
            "TorchServe 0.12, 1 worker, no batching, async logging",
        ),
        Variant(
            "torchserve-batch",
            "torchserve",
            TorchServeConfig(workers=1, batch_size=8, max_batch_delay_ms=2),
            ("torchserve-rest",),
            "TorchServe 0.12, 1 worker, batchSize 8, maxBatchDelay 2 ms, async logging",
        ),
        Variant(
            "mlserver",
            "mlserver",
            MLServerConfig(parallel_workers=1),
            ("oip-rest", "oip-grpc"),
            "MLServer 1.7.1, parallel_workers 1, debug off, no adaptive batching",
        ),
        Variant(
            "mlserver-batch",
            "mlserver",
            MLServerConfig(parallel_workers=1, max_batch_size=8, max_batch_time_s=0.002),
            ("oip-rest", "oip-grpc"),
            "MLServer 1.7.1, parallel_workers 1, adaptive batching 8 / 2 ms, debug off",
        ),
    )
}
BENCH_SET = ("truce", "truce-batch", "floor")
COMPARE_SET = (*BENCH_SET, "torchserve", "torchserve-batch", "mlserver", "mlserver-batch")


def make_server(
    variant: Variant, work: Path, models: dict[str, Path], inputs: dict[str, str]
) -> BenchServer:
    """The server object for ``variant`` (not started); ``inputs``: model -> NAME:DTYPE:SHAPE."""
    folder = work / variant.name
    if variant.kind == "truce":
        return TruceServer(folder, models, variant.config, inputs)
    if variant.kind == "torchserve":
        return TorchServe(folder, models, variant.config)
    if variant.kind == "mlserver":
        return MLServer(folder, models, variant.config)
    return FloorServer(folder)


def grpc_target(server: BenchServer) -> str | None:
    target = getattr(server, "grpc_target", None)
    return target if isinstance(target, str) else None
