"""Locust users for every protocol Truce speaks; run by ``truce loadtest`` in its own process.

Each user sends one prepared request (``loadtests/prepared.py``) in a closed loop, with no
think time: HTTP protocols through locust's ``FastHttpUser``, gRPC protocols through a raw
``grpc`` channel whose calls are reported to locust's statistics (``events.request.fire``)
exactly like HTTP requests. Every request also goes into a ``LatencyRecorder`` saved to
``$TRUCE_LOADTEST_RESULTS`` once a second (progress) and at the end (summary, SLO gate).

Environment: ``TRUCE_LOADTEST_REQUEST`` (folder of the prepared request, required),
``TRUCE_LOADTEST_RESULTS`` (results file), ``TRUCE_LOADTEST_TIMEOUT`` (seconds per request).

By hand::

    TRUCE_LOADTEST_REQUEST=req/ locust -f loadtests/locustfile.py --headless \
        -H http://127.0.0.1:8080 -u 8 -r 8 -t 30s OipRestUser
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import gevent
from locust import FastHttpUser, User, constant, events, task
from locust.env import Environment

from loadtests.failures import RequestFailure, exception_kind, http_failure
from loadtests.prepared import PreparedRequest, grpc_target, load_prepared
from loadtests.recorder import LatencyRecorder

RECORDER = LatencyRecorder()
_REQUEST_DIR = os.environ.get("TRUCE_LOADTEST_REQUEST", "")
_RESULTS = os.environ.get("TRUCE_LOADTEST_RESULTS", "")
TIMEOUT_S = float(os.environ.get("TRUCE_LOADTEST_TIMEOUT", "30"))
_started: float | None = None
_stopped: float | None = None


def _prepared(protocol: str) -> PreparedRequest:
    if not _REQUEST_DIR:
        raise RuntimeError("set TRUCE_LOADTEST_REQUEST to a prepared request folder")
    request = load_prepared(Path(_REQUEST_DIR))
    if request.protocol != protocol:
        raise RuntimeError(f"the prepared request speaks {request.protocol}, not {protocol}")
    return request


def _save() -> None:
    if _started is not None:
        RECORDER.duration_s = (_stopped or time.monotonic()) - _started
    if _RESULTS:
        RECORDER.save(Path(_RESULTS))


def _record(response_time: float, exception: BaseException | None = None, **_: Any) -> None:
    RECORDER.add(response_time, None if exception is None else exception_kind(exception))


def _on_start(environment: Environment, **_: Any) -> None:
    global _started
    _started = time.monotonic()

    def progress() -> None:
        while _stopped is None:
            _save()
            gevent.sleep(1.0)

    gevent.spawn(progress)


def _on_stop(environment: Environment, **_: Any) -> None:
    global _stopped
    if _stopped is None:
        _stopped = time.monotonic()
    _save()


events.request.add_listener(_record)
events.test_start.add_listener(_on_start)
events.test_stop.add_listener(_on_stop)


class HttpInferUser(FastHttpUser):
    """Posts the prepared body; a good answer is a 2xx whose body has the expected key."""

    abstract = True
    protocol: ClassVar[str] = ""
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = TIMEOUT_S
    # one connection per user, kept alive, like a pooled client
    concurrency = 1

    def on_start(self) -> None:
        self.prepared = _prepared(self.protocol)
        self.headers = {"Accept-Encoding": "identity", **self.prepared.headers}

    @task
    def infer(self) -> None:
        p = self.prepared
        with self.client.post(
            p.target,
            data=p.body,  # type: ignore[arg-type]  # bytes go through as-is
            headers=self.headers,
            name=self.protocol,
            catch_response=True,
        ) as resp:
            error = getattr(resp, "error", None)  # set only when the exchange failed
            kind = http_failure(resp.status_code, resp.content, error, p.expect)
            if kind is None:
                resp.success()
            else:
                resp.failure(RequestFailure(kind))


class GrpcInferUser(User):
    """Calls the prepared gRPC method with the prepared message bytes (no re-serializing)."""

    abstract = True
    protocol: ClassVar[str] = ""
    wait_time = constant(0)

    def on_start(self) -> None:
        import grpc
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()  # make gRPC's blocking calls yield to other greenlets
        self.prepared = _prepared(self.protocol)
        self._grpc = grpc
        limit = 256 * 1024 * 1024
        self.channel = grpc.insecure_channel(
            grpc_target(self.host or ""),
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
            ],
        )
        self.call = self.channel.unary_unary(self.prepared.target)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def infer(self) -> None:
        grpc = self._grpc
        exception: BaseException | None = None
        length = 0
        start = time.perf_counter()
        try:
            length = len(self.call(self.prepared.body, timeout=TIMEOUT_S))
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            exception = RequestFailure(f"gRPC {getattr(code, 'name', 'error')}")
        self.environment.events.request.fire(
            request_type="gRPC",
            name=self.protocol,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )


class OipRestUser(HttpInferUser):
    protocol = "oip-rest"


class OipRestBinaryUser(HttpInferUser):
    protocol = "oip-rest-binary"


class TfServingRestUser(HttpInferUser):
    protocol = "tfserving-rest"


class TorchServeRestUser(HttpInferUser):
    protocol = "torchserve-rest"


class OipGrpcUser(GrpcInferUser):
    protocol = "oip-grpc"


class TfServingGrpcUser(GrpcInferUser):
    protocol = "tfserving-grpc"
