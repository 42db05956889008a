"""Open Inference Protocol v2 over REST: routes whose handlers convert, call, convert back.

    GET  /v2/health/live                         200 {"live": true}
    GET  /v2/health/ready                        200 {"ready": true} | 503 {"ready": false}
    GET  /v2                                     server metadata
    GET  /v2/models/{m}[/versions/{v}]           model metadata ({v}: number or alias)
    GET  /v2/models/{m}[/versions/{v}]/ready     200 | 503, {"name", "ready"}
    POST /v2/models/{m}[/versions/{v}]/infer     inference (JSON, or binary tensor data)

A client deadline comes from the ``X-Request-Timeout`` header (seconds) or Triton's
``parameters.timeout`` (microseconds), capped by ``max_request_timeout_s``. Wire details and
policies (NaN, BYTES, binary data) are in ``rest_codec``.
"""

from __future__ import annotations

import time

from gateway.deadlines import deadline_after
from gateway.http_base import HttpError, Request, Response, Router, json_response
from gateway.metrics import Metrics
from gateway.protocols.adapters import TIMEOUT_HEADER, media_type, timeout_header
from gateway.protocols.oip import rest_codec as codec
from gateway.settings import Settings
from gateway.types import DataPlaneAPI
from truce.errors import TruceError

#: media types an infer body may declare (curl -d sends form-urlencoded by default)
_BODY_TYPES = frozenset(
    {"", "application/json", "application/octet-stream", "application/x-www-form-urlencoded",
     "text/plain"}
)  # fmt: skip


class OipRest:
    """The OIP REST handlers over one ``DataPlaneAPI``."""

    def __init__(
        self, dataplane: DataPlaneAPI, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.dp = dataplane
        self.settings = settings
        self.metrics = metrics
        self.max_depth = settings.max_json_depth

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/v2/health/live", self.live)
        router.add("GET", "/v2/health/ready", self.ready)
        router.add("GET", "/v2", self.server_metadata)
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            router.add("GET", prefix, self.model_metadata)
            router.add("GET", prefix + "/ready", self.model_ready)
            router.add("POST", prefix + "/infer", self.infer, body=True, watch_disconnect=True)

    async def live(self, request: Request) -> Response:
        live = self.dp.live()
        return json_response({"live": live}, 200 if live else 503)

    async def ready(self, request: Request) -> Response:
        ready = self.dp.ready()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return Response(200, codec.encode_server_metadata(self.dp.server_metadata()))

    async def model_metadata(self, request: Request) -> Response:
        name, version = request.params["model"], request.params.get("version")
        return Response(200, codec.encode_model_metadata(self.dp.model_metadata(name, version)))

    async def model_ready(self, request: Request) -> Response:
        name, version = request.params["model"], request.params.get("version")
        ready = self.dp.model_ready(name, version)
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Request) -> Response:
        start = time.monotonic()
        name, version = request.params["model"], request.params.get("version")
        media = media_type(request.headers)
        if media not in _BODY_TYPES:
            raise HttpError(
                415, f"Content-Type {media[:64]!r} is not accepted; send application/json"
            )
        try:
            req, options = codec.decode_infer_request(
                request.body,
                request.headers.get(codec.HEADER_LENGTH),
                max_depth=self.max_depth,
                max_elements=self.settings.max_tensor_elements,
            )
            timeout = timeout_header(request.headers.get(TIMEOUT_HEADER))
            if timeout is None:
                timeout = codec.timeout_parameter(req.parameters)
        except TruceError as exc:
            if self.metrics is not None:  # never reached the dataplane: count it here
                self.metrics.request("", "", "rest", str(exc.code), time.monotonic() - start)
            # an unknown model or version is the first thing to fix: its 404 wins over the 400
            self.dp.model_ready(name, version)
            raise
        req.deadline = deadline_after(self.settings, timeout, start)
        req.protocol = "rest"
        resp = await self.dp.infer(name, version, req)
        body, json_size = codec.encode_infer_response(resp, options)
        if json_size is None:
            return Response(200, body)
        header = [(b"inference-header-content-length", str(json_size).encode())]
        return Response(200, body, "application/octet-stream", header)
