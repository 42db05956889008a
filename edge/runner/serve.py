"""``serve``: the Open Inference Protocol v2 REST subset on the standard library's HTTP server.

    GET  /v2/health/live | /v2/health/ready | /v2
    GET  /v2/models/{m}[/versions/{v}]            model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready
    POST /v2/models/{m}[/versions/{v}]/infer      JSON tensors (no binary extension)

The same client code calls the cloud gateway and the device. Errors are ``{"error": "..."}``
with the gateway's statuses: 400 bad request, 404 unknown model/version/route, 405 wrong
method, 411 no Content-Length, 413 body over the limit (refused before reading it), 415 not
JSON, 503 when more requests are in flight than the device should take. A handler thread
that cannot get a slot answers at once instead of queueing without bound.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.runner.model import BundleModel, InputError, ModelFailure
from edge.runner.oip import check_requested, check_version, decode_request, encode_response

DEFAULT_MAX_BODY = 4 << 20
DEFAULT_MAX_INFLIGHT = 4
_MODEL_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
_GET_ONLY = {"/v2", "/v2/health/live", "/v2/health/ready"}


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class EdgeServer(ThreadingHTTPServer):
    """One bundle behind an OIP v2 REST endpoint."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        model: BundleModel,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        quiet: bool = False,
    ) -> None:
        self.model = model
        self.max_body = max_body
        self.slots = threading.BoundedSemaphore(max_inflight)
        self.quiet = quiet
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: EdgeServer
    protocol_version = "HTTP/1.1"
    server_version = "truce-edge"
    sys_version = ""
    timeout = 30  # a client that stops sending cannot hold a thread for long

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- plumbing ---------------------------------------------------------------------
    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            status, body = self._route(method)
            self._send(status, body)
        except HttpError as exc:
            self._send(exc.status, {"error": exc.message}, exc.headers)
        except InputError as exc:
            self._send(400, {"error": str(exc)})
        except ModelFailure as exc:
            self._send(500, {"error": str(exc)})
        except Exception as exc:  # never a traceback to the client
            self.log_message("internal error: %s", type(exc).__name__)
            self._send(500, {"error": "internal error in the edge runner; see its log"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # --- routes -----------------------------------------------------------------------
    def _route(self, method: str) -> tuple[int, Any]:
        path = self.path.split("?", 1)[0]
        model = self.server.model
        if path in _GET_ONLY:
            self._need(method, "GET")
            if path == "/v2":
                return 200, {"name": "truce-edge", "version": "1", "extensions": []}
            return 200, {"live" if path.endswith("live") else "ready": True}
        m = _MODEL_ROUTE.match(path)
        if m is None:
            raise HttpError(404, f"no route {path[:80]!r}; see /v2/models/{model.name}")
        name, version, action = m.group(1), m.group(2), m.group(3)
        if version is not None:
            check_version(version)
        if name != model.name:
            raise HttpError(404, f"unknown model {name[:64]!r}; this device serves {model.name!r}")
        if version is not None and version not in (model.version, "latest"):
            raise HttpError(
                404, f"unknown version {version!r} of {name!r}; this device has {model.version}"
            )
        if action == "/infer":
            self._need(method, "POST")
            return 200, self._infer()
        self._need(method, "GET")
        if action == "/ready":
            return 200, {"name": model.name, "ready": True}
        return 200, {
            "name": model.name,
            "versions": [model.version],
            "platform": model.format,
            "inputs": [s.as_dict() for s in model.inputs],
            "outputs": [s.as_dict() for s in model.outputs],
        }

    def _need(self, method: str, allowed: str) -> None:
        if method != allowed:
            self._drain()
            raise HttpError(405, f"use {allowed} on this route", {"Allow": allowed})

    def _drain(self) -> None:
        # keep-alive needs the unread body consumed, or the connection closed
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= self.server.max_body:
            self.rfile.read(int(length))
        elif length or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HttpError(411, "send the body with a Content-Length (no chunked encoding)")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise HttpError(411, "a Content-Length header is required")
        size = int(length)
        if size > self.server.max_body:
            self.close_connection = True
            raise HttpError(
                413, f"the body is {size} bytes; this device accepts at most {self.server.max_body}"
            )
        data = self.rfile.read(size)
        if len(data) != size:
            self.close_connection = True
            raise HttpError(400, "the body ended before Content-Length bytes")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype.lower() != "application/json":
            raise HttpError(415, f"Content-Type {ctype[:60]!r} is not supported; send JSON")
        if self.headers.get("Inference-Header-Content-Length"):
            raise HttpError(400, "the binary tensor extension is not supported here; send JSON")
        if not data:
            raise HttpError(400, "the body is empty; send a JSON infer request")
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "the body is not valid UTF-8") from None
        except RecursionError:
            raise HttpError(400, "the JSON body is nested too deeply") from None
        except ValueError as exc:
            raise HttpError(400, f"the body is not valid JSON ({str(exc)[:80]})") from None

    def _infer(self) -> dict[str, Any]:
        body = self._read_json()
        model = self.server.model
        inputs, requested, rid = decode_request(body)
        check_requested(requested, model.outputs)
        if not self.server.slots.acquire(blocking=False):
            raise HttpError(503, "the device is busy; retry shortly", {"Retry-After": "1"})
        try:
            outputs = model.predict(inputs)
        finally:
            self.server.slots.release()
        return encode_response(model.name, model.version, outputs, model.outputs, requested, rid)
