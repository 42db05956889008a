"""The gateway's ASGI apps: one small app class, wired as the inference and admin listeners.

What every request goes through (``App.__call__``):

- routing: unknown paths 404, known paths with another method 405 (``Allow`` header), any
  method, always a JSON ``{"error": ...}`` body; never a 5xx for a bad request;
- the body, read only for routes that take one: ``Content-Length`` over the limit is
  refused before reading, a chunked body as soon as it passes the limit (413, connection
  closed), so memory stays bounded; ``Content-Encoding: gzip/deflate`` is inflated with the
  same limit;
- a request id: ``X-Request-ID`` from the client (if sane) or a new one, echoed back;
- errors: ``TruceError`` -> status from ``gateway/status.py`` (+ ``Retry-After`` when
  retrying can help); anything else is logged with its traceback and answered 500 with a
  message that reveals nothing;
- client disconnects: on routes that queue (inference), the handler is cancelled when the
  client goes away, so a request nobody waits for is never executed;
- one structured (JSON) access log line per request on the ``truce.access`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from gateway.http_base import (
    Handler,
    HttpError,
    Request,
    Response,
    Router,
    error_response,
)
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.status import RETRYABLE, http_status
from gateway.types import DataPlaneAPI
from truce.errors import ErrorCode, InvalidArgument, TruceError

log = logging.getLogger(__name__)
access_log = logging.getLogger("truce.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Authorize = Callable[[dict[str, str]], None]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CLOSE = [(b"connection", b"close")]


class ClientGone(Exception):
    """The client disconnected before the response; nothing is sent."""


class App:
    """An ASGI app over a ``Router`` (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        *,
        max_body: int,
        retry_after_s: int = 1,
        access_log: bool = True,
        authorize: Authorize | None = None,
        listener: str = "http",
        body_timeout_s: float = 300.0,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        self.router = router
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s
        self.draining = draining
        self.retry_after = str(retry_after_s).encode()
        self.access_log = access_log
        self.authorize = authorize
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await _not_http(scope, receive, send)
        start = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        if not _REQUEST_ID.match(rid):
            rid = os.urandom(8).hex()
        size_in = 0
        try:
            if self.authorize is not None:
                self.authorize(headers)
            route, handler, params = self.router.match(method, path)
            body = await self._read_body(receive, headers) if route.body else bytearray()
            size_in = len(body)
            request = Request(method, path, params, headers, body, rid)
            if route.watch_disconnect:
                response = await _watching(handler, request, receive)
            else:
                response = await handler(request)
        except ClientGone:
            self._log(method, path, 499, rid, start, size_in, 0)
            return None
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except TruceError as exc:
            response = self._truce_error(exc)
        except Exception:
            log.exception("request %s %s failed (request id %s)", method, path[:200], rid)
            response = error_response(500, "internal error; the server log has details")
        if self.draining is not None and self.draining():
            # keep-alive connections would race the listener closing: one request each now
            response.headers.append(_CLOSE[0])
        await _send(send, response, rid, head=method == "HEAD")
        self._log(method, path, response.status, rid, start, size_in, len(response.body))
        return None

    def _truce_error(self, exc: TruceError) -> Response:
        status = http_status(exc.code)
        headers = [(b"retry-after", self.retry_after)] if exc.code in RETRYABLE else []
        if exc.code is ErrorCode.PAYLOAD_TOO_LARGE:
            headers += _CLOSE  # the rest of the body is not read: end the connection
        elif exc.code is ErrorCode.UNAUTHENTICATED:
            headers.append((b"www-authenticate", b"Bearer"))
        return error_response(status, exc.message, headers)

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytearray:
        limit = self.max_body
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise InvalidArgument("Content-Length must be a number of bytes")
            if int(declared) > limit:
                raise _too_large(int(declared), limit)
        body = bytearray()
        more = True
        give_up = 0.0
        while more:
            if not give_up:
                message = await receive()  # the common case: the whole body at once
                give_up = time.monotonic() + self.body_timeout_s
            else:  # a body in pieces: a client that stalls must not hold us forever
                try:
                    message = await asyncio.wait_for(receive(), give_up - time.monotonic())
                except TimeoutError:
                    raise HttpError(
                        408, "the request body did not arrive in time", list(_CLOSE)
                    ) from None
            if message["type"] == "http.disconnect":
                raise ClientGone
            body += message.get("body", b"")
            if len(body) > limit:
                raise _too_large(len(body), limit)
            more = message.get("more_body", False)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            body = _inflate(body, encoding, limit)
        return body

    def _log(
        self, method: str, path: str, status: int, rid: str, start: float, size_in: int, out: int
    ) -> None:
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            line = {
                "listener": self.listener,
                "request_id": rid,
                "method": method[:16],
                "path": path[:256],
                "status": status,
                "ms": round((time.perf_counter() - start) * 1000, 3),
                "bytes_in": size_in,
                "bytes_out": out,
            }
            access_log.info(orjson.dumps(line).decode())


def _too_large(size: int, limit: int) -> TruceError:
    return TruceError(
        f"the request body ({size} bytes or more) exceeds the limit of {limit} bytes; "
        "send less data per request (binary tensors are smaller than JSON) or raise "
        "max_request_bytes",
        ErrorCode.PAYLOAD_TOO_LARGE,
    )


def _inflate(body: bytearray, encoding: str, limit: int) -> bytearray:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise HttpError(415, f"Content-Encoding {encoding[:32]!r} is not supported; use gzip")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidArgument(f"the body is not valid {encoding} data") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(len(out), limit)
    if not inflater.eof:
        raise InvalidArgument(f"the {encoding} body is truncated")
    return bytearray(out)


async def _watching(handler: Handler, request: Request, receive: Receive) -> Response:
    """Run ``handler``, cancelling it if the client disconnects meanwhile."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                task.cancel()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if gone:
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


async def _send(send: Send, response: Response, rid: str, *, head: bool = False) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        (b"x-request-id", rid.encode()),
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def _not_http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})


def build_inference_app(
    dataplane: DataPlaneAPI,
    settings: Settings,
    metrics: Metrics,
    *,
    draining: Callable[[], bool] | None = None,
) -> App:
    """The inference listener: OIP v2, TF Serving and TorchServe REST, and ``GET /metrics``.

    ``draining`` tells when shutdown has begun (responses then close their connection)."""
    from gateway.protocols.oip.rest import OipRest
    from gateway.protocols.tfserving.rest import TFServingRest
    from gateway.protocols.torchserve.rest import TorchServeRest

    router = Router()
    OipRest(dataplane, settings, metrics).add_routes(router)
    TFServingRest(dataplane, settings, metrics).add_routes(router)
    TorchServeRest(dataplane, settings, metrics).add_routes(router)

    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(200, body, content_type)

    router.add("GET", "/metrics", prometheus)
    return App(
        router,
        max_body=settings.max_request_bytes,
        retry_after_s=settings.retry_after_s,
        access_log=settings.access_log,
        listener="inference",
        body_timeout_s=settings.max_request_timeout_s,
        draining=draining,
    )
