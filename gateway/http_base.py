"""The small HTTP vocabulary the gateway's ASGI apps share: requests, responses, routing.

Handlers are ``async def handler(request: Request) -> Response``; they raise ``TruceError``
for failures (mapped by ``gateway/status.py``) or ``HttpError`` for the few HTTP-only ones
(405, 415). No web framework: the inference hot path is a dictionary lookup, a handler
call and one ``send``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

JSON = "application/json"
Headers = list[tuple[bytes, bytes]]


class HttpError(Exception):
    """An HTTP-only failure: a status, a message for the JSON body, extra headers."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@dataclass(slots=True)
class Request:
    """One HTTP request, with its body already read (when the route wants it)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytearray
    request_id: str


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Headers = field(default_factory=list)


def json_response(doc: object, status: int = 200, headers: Headers | None = None) -> Response:
    return Response(status, orjson.dumps(doc), JSON, headers or [])


def error_response(status: int, message: str, headers: Headers | None = None) -> Response:
    """The body every error has: ``{"error": "..."}``."""
    return Response(status, orjson.dumps({"error": message}), JSON, headers or [])


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    template: tuple[str, ...]
    handlers: dict[str, Handler]
    #: read the request body before calling the handler (bounded by the app's limit)
    body: bool = False
    #: cancel the handler when the client disconnects (requests that wait in a queue)
    watch_disconnect: bool = False


class Router:
    """Path templates like ``/v2/models/{model}/infer``; unknown paths 404, methods 405."""

    def __init__(self) -> None:
        self._by_length: dict[int, list[Route]] = {}

    def add(
        self,
        method: str,
        template: str,
        handler: Handler,
        *,
        body: bool = False,
        watch_disconnect: bool = False,
    ) -> None:
        parts = tuple(template.strip("/").split("/"))
        routes = self._by_length.setdefault(len(parts), [])
        for route in routes:
            if route.template == parts:
                route.handlers[method] = handler
                return
        routes.append(Route(parts, {method: handler}, body, watch_disconnect))

    def match(self, method: str, path: str) -> tuple[Route, Handler, dict[str, str]]:
        """The route, handler and path parameters; ``HttpError`` 404 or 405 otherwise."""
        parts = path.strip("/").split("/")
        for route in self._by_length.get(len(parts), ()):
            params = _bind(route.template, parts)
            if params is None:
                continue
            handler = route.handlers.get(method)
            if handler is None and method == "HEAD":
                handler = route.handlers.get("GET")
            if handler is None:
                allow = ", ".join(sorted(route.handlers))
                raise HttpError(
                    405,
                    f"method {method[:16]} is not allowed on this path; use {allow}",
                    [(b"allow", allow.encode())],
                )
            return route, handler, params
        raise HttpError(
            404,
            "no such endpoint; the APIs are the Open Inference Protocol v2 (/v2/...), "
            "TF Serving's (/v1/models/...) and TorchServe's (/ping, /predictions/...)",
        )


def _bind(template: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for want, got in zip(template, parts, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params
