"""TorchServe's inference REST API on the gateway's HTTP port, for every stored model.

    GET  /ping                              {"status": "Healthy"} | 503 {"status": "Unhealthy"}
    POST /predictions/{m}[/{version}]       JSON tensor, .npy body, or raw bytes (``codec``)

``{version}`` is a version number or an alias. Errors use TorchServe's document
``{"code", "type", "message"}`` with the status from ``gateway/status.py``. A client deadline
comes from the ``X-Request-Timeout`` header (seconds).
"""

from __future__ import annotations

import time

import orjson

from gateway.http_base import JSON, Handler, Request, Response, Router
from gateway.metrics import Metrics
from gateway.protocols.adapters import media_type, rest_deadline
from gateway.protocols.torchserve import codec
from gateway.settings import Settings
from gateway.status import RETRYABLE, http_status
from gateway.types import DataPlaneAPI, InferRequest
from truce.errors import TruceError

PROTOCOL = "torchserve-rest"


def torchserve_errors(handler: Handler, retry_after_s: int) -> Handler:
    """Answer ``TruceError``s in TorchServe's error shape (``Retry-After`` when useful)."""
    retry_after = str(retry_after_s).encode()

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except TruceError as exc:
            status = http_status(exc.code)
            headers = [(b"retry-after", retry_after)] if exc.code in RETRYABLE else []
            return Response(status, codec.error_body(status, exc.code, exc.message), JSON, headers)

    return wrapped


class TorchServeRest:
    """The TorchServe inference handlers over one ``DataPlaneAPI``."""

    def __init__(
        self, dataplane: DataPlaneAPI, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.dp = dataplane
        self.settings = settings
        self.metrics = metrics

    def add_routes(self, router: Router) -> None:
        predict = torchserve_errors(self.predictions, self.settings.retry_after_s)
        for template in ("/predictions/{model}", "/predictions/{model}/{version}"):
            router.add("POST", template, predict, body=True, watch_disconnect=True)
        router.add("GET", "/ping", self.ping)

    async def ping(self, request: Request) -> Response:
        ready = self.dp.ready()
        body = orjson.dumps({"status": "Healthy" if ready else "Unhealthy"})
        return Response(200 if ready else 503, body)

    async def predictions(self, request: Request) -> Response:
        start = time.monotonic()
        name, version = request.params["model"], request.params.get("version")
        try:
            meta = self.dp.model_metadata(name, version)
            inputs = codec.decode_body(
                request.body,
                media_type(request.headers),
                meta.inputs,
                max_depth=self.settings.max_json_depth,
                max_elements=self.settings.max_tensor_elements,
            )
            deadline = rest_deadline(self.settings, request.headers, start)
        except TruceError as exc:
            if self.metrics is not None:  # never reached the dataplane: count it here
                self.metrics.request("", "", PROTOCOL, str(exc.code), time.monotonic() - start)
            raise
        req = InferRequest(inputs=inputs, deadline=deadline, protocol=PROTOCOL)
        resp = await self.dp.infer(name, version, req)
        return Response(200, codec.encode_outputs(resp.outputs))
