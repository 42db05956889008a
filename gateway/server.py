"""``truce serve``: the inference HTTP app, the admin app and gRPC in one process, one loop.

Startup: bind every listener first (a taken port fails at once), start serving (live is
200, ready is 503 while models load), load the store, then readiness turns 200. With
``ports_file`` the bound ports are written there as JSON once the listeners answer (tests
and scripts use port 0 and read it).

SIGTERM: readiness turns 503 and new inference requests get 503 at once; in-flight requests
finish (up to ``shutdown_grace_s``); after ``shutdown_delay_s`` the listeners close, every
model is drained and unloaded, and the process exits 0. A second signal skips the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from gateway import gc_pauses
from gateway.admin import build_admin_app, load_admin_token
from gateway.dataplane import DataPlane
from gateway.http_app import App, build_inference_app
from gateway.metrics import Metrics
from gateway.registry import Registry, RuntimeFactory
from gateway.settings import Settings
from model_store.store import open_store
from truce.errors import FailedPrecondition

log = logging.getLogger("truce.serve")


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that leaves signals to us (several run in one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(
            f"cannot listen on {host}:{port} for {what} ({exc.strerror}); choose another port "
            "or stop the process using it"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn(app: App, settings: Settings) -> _Uvicorn:
    config = uvicorn.Config(
        app,
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
    )
    return _Uvicorn(config)


def configure_logging(level: str) -> None:
    """Plain lines for the server log; the access log is one JSON document per line."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    access = logging.getLogger("truce.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False


class GatewayServer:
    """All listeners of one gateway process; ``run`` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        *,
        ports_file: Path | None = None,
        runtime_factory: RuntimeFactory | None = None,
    ) -> None:
        self.settings = settings
        self.ports_file = ports_file
        self.metrics = Metrics()
        store = open_store(settings.store)
        if runtime_factory is None:
            self.registry = Registry(store, settings, self.metrics)
        else:
            self.registry = Registry(store, settings, self.metrics, runtime_factory=runtime_factory)
        self.dataplane = DataPlane(self.registry, settings)
        self.ports: dict[str, Any] = {}
        self._stop = asyncio.Event()
        self._stops = 0
        self._fast = False

    def request_stop(self, *, fast: bool = False) -> None:
        """What SIGTERM does (``fast``: SIGINT); a second call skips the waiting.

        Call it on the server's event loop."""
        self._stops += 1
        if self._stops == 1:
            self.dataplane.begin_drain()
            self._fast = fast
        else:
            self._fast = True
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        log.info("received %s: draining", signal.Signals(signum).name)
        self.request_stop(fast=signum == signal.SIGINT)

    async def run(self, *, install_signals: bool = True) -> int:
        s = self.settings
        log.info("settings: %s", json.dumps(s.effective(), sort_keys=True))
        http_sock = _bind(s.host, s.http_port, "HTTP inference")
        admin_sock = _bind(s.admin_host, s.admin_port, "the admin API") if s.admin_enabled else None
        grpc_server, grpc_port = self._grpc()
        app = build_inference_app(self.dataplane, s, self.metrics, draining=self.dataplane.draining)
        http = _uvicorn(app, s)
        servers: list[tuple[_Uvicorn, socket.socket]] = [(http, http_sock)]
        if admin_sock is not None:
            token = load_admin_token(s)
            servers.append((_uvicorn(build_admin_app(self.registry, s, token), s), admin_sock))
        loop = asyncio.get_running_loop()
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
        tasks = [loop.create_task(srv.serve(sockets=[sock])) for srv, sock in servers]
        if grpc_server is not None:
            await grpc_server.start()
        while not all(srv.started for srv, _ in servers):
            if any(t.done() for t in tasks):
                raise FailedPrecondition("a listener failed to start; see the log above")
            await asyncio.sleep(0.01)
        ports = self.ports = {
            "http": http_sock.getsockname()[1],
            "grpc": grpc_port,
            "admin": admin_sock.getsockname()[1] if admin_sock is not None else None,
            "pid": os.getpid(),
        }
        log.info("listening: %s", json.dumps(ports))
        gc_pauses.settle()  # the imports and listeners; each loaded model settles again
        loader = loop.create_task(self.registry.start())
        loader.add_done_callback(_log_failure)
        if self.ports_file is not None:
            _write_json(self.ports_file, ports)
        await self._stop.wait()
        await self._shutdown(servers, tasks, grpc_server, loader)
        return 0

    def _grpc(self) -> tuple[Any, int | None]:
        if not self.settings.grpc_enabled:
            return None, None
        try:
            import grpc

            from gateway.protocols.oip.grpc import add_to_server, grpc_server_options
        except ImportError as exc:
            # Failing loudly: a gateway that silently drops a listener looks healthy to its
            # operator while every gRPC client is refused.
            raise FailedPrecondition(
                f"gRPC cannot start ({exc.name or exc} is not installed): install the 'serve' "
                "extra, or pass --no-grpc"
            ) from None
        from gateway.protocols.tfserving import grpc as tfserving_grpc
        from gateway.protocols.torchserve import grpc as torchserve_grpc

        server = grpc.aio.server(options=grpc_server_options(self.settings))
        tfserving_grpc.add_to_server(server, self.dataplane, self.settings)
        torchserve_grpc.add_to_server(server, self.dataplane, self.settings)
        dialects = (*tfserving_grpc.SERVICES, *torchserve_grpc.SERVICES)
        add_to_server(server, self.dataplane, self.settings, also_reflect=dialects)
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            raise FailedPrecondition(
                f"cannot listen on {address} for gRPC; choose another --grpc-port"
            )
        return server, port

    async def _shutdown(
        self,
        servers: list[tuple[_Uvicorn, socket.socket]],
        tasks: list[asyncio.Task[None]],
        grpc_server: Any,
        loader: asyncio.Task[None],
    ) -> None:
        s = self.settings
        deadline = time.monotonic() + s.shutdown_grace_s
        if not self._fast:
            await self.dataplane.wait_idle(s.shutdown_grace_s)
            await self._sleep_unless_fast(s.shutdown_delay_s)
        for srv, _ in servers:
            srv.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop(max(0.0, deadline - time.monotonic()))
        await asyncio.wait(tasks, timeout=s.shutdown_grace_s + 2)
        if not loader.done():
            loader.cancel()
        await self.registry.close()
        log.info("stopped")

    async def _sleep_unless_fast(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._fast and time.monotonic() < end:
            await asyncio.sleep(min(0.05, end - time.monotonic()))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("loading the models failed", exc_info=task.exception())


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def run_server(settings: Settings, *, ports_file: Path | None = None) -> int:
    """Run the gateway until SIGTERM/SIGINT; the process exit code."""
    configure_logging(settings.log_level)
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(GatewayServer(settings, ports_file=ports_file).run())
