"""TF Serving's REST API on the gateway's HTTP port, for every stored model.

    GET  /v1/models/{m}                                 version status
    GET  /v1/models/{m}/versions/{v}                    status of one version
    GET  /v1/models/{m}/labels/{label}                  status of an alias (TF Serving: label)
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata     the signature (SignatureDef)
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict      row or columnar format
    POST ...:classify | ...:regress                     400: Truce models have one predict
                                                        signature, never a classify/regress one

Every handler converts, calls the ``DataPlaneAPI`` and converts back (``rest_codec``); errors
are ``{"error": "..."}`` with the status from ``gateway/status.py``, like TF Serving's.
A client deadline comes from the ``X-Request-Timeout`` header (seconds).
"""

from __future__ import annotations

import time

from gateway.http_base import HttpError, Request, Response, Router
from gateway.metrics import Metrics
from gateway.protocols.adapters import rest_deadline
from gateway.protocols.tfserving import rest_codec as codec
from gateway.protocols.tfserving.dtypes import SIGNATURE
from gateway.settings import Settings
from gateway.types import DataPlaneAPI
from truce.errors import InvalidArgument, TruceError

PROTOCOL = "tfserving-rest"
_VERBS = ("predict", "classify", "regress")


class TFServingRest:
    """The TF Serving REST handlers over one ``DataPlaneAPI``."""

    def __init__(
        self, dataplane: DataPlaneAPI, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.dp = dataplane
        self.settings = settings
        self.metrics = metrics

    def add_routes(self, router: Router) -> None:
        # POST first: a template's first registration decides whether its body is read
        for prefix in (
            "/v1/models/{model}",
            "/v1/models/{model}/versions/{version}",
            "/v1/models/{model}/labels/{label}",
        ):
            router.add("POST", prefix, self.call, body=True, watch_disconnect=True)
            router.add("GET", prefix, self.status)
            router.add("GET", prefix + "/metadata", self.metadata)

    # --- status and metadata --------------------------------------------------------------
    async def status(self, request: Request) -> Response:
        name, version, verb = _target(request)
        if verb is not None:
            raise HttpError(405, f":{verb} needs POST", [(b"allow", b"POST")])
        if version is None:
            meta = self.dp.model_metadata(name)
            entries = [(v, True) for v in meta.versions]
            return Response(200, codec.encode_status(entries))
        meta = self.dp.model_metadata(name, version)  # NotFound for an unknown version or label
        ready = self.dp.model_ready(name, version)
        shown = meta.version or version  # a label is reported as the version it points at
        return Response(200, codec.encode_status([(shown, ready)]))

    async def metadata(self, request: Request) -> Response:
        name, version, verb = _target(request)
        if verb is not None:
            raise HttpError(404, "no such endpoint; metadata is GET /v1/models/{m}/metadata")
        meta = self.dp.model_metadata(name, version)
        shown = version or (meta.versions[-1] if meta.versions else "")
        return Response(200, codec.encode_metadata(meta, shown))

    # --- predict --------------------------------------------------------------------------
    async def call(self, request: Request) -> Response:
        start = time.monotonic()
        try:
            name, version, verb = _target(request)
            if verb is None:
                raise HttpError(405, "POST needs a method: .../{m}:predict", [(b"allow", b"GET")])
            if verb != "predict":
                raise InvalidArgument(
                    f"model {name!r} has no {verb} signature: Truce serves one predict "
                    f"signature per model ({SIGNATURE}); call :predict instead"
                )
            meta = self.dp.model_metadata(name, version)
            req, row = codec.decode_predict(
                request.body,
                meta.inputs,
                max_depth=self.settings.max_json_depth,
                max_elements=self.settings.max_tensor_elements,
            )
            req.deadline = rest_deadline(self.settings, request.headers, start)
        except TruceError as exc:
            if self.metrics is not None:  # never reached the dataplane: count it here
                self.metrics.request("", "", PROTOCOL, str(exc.code), time.monotonic() - start)
            raise
        resp = await self.dp.infer(name, version, req)
        return Response(200, codec.encode_predict(resp, row))


def _target(request: Request) -> tuple[str, str | None, str | None]:
    """(model, version or label, verb) of ``/v1/models/{m}[/versions/{v}|/labels/{l}][:verb]``."""
    params = request.params
    name = params["model"]
    version = params.get("version")
    label = params.get("label")
    last = "version" if version is not None else "label" if label is not None else "model"
    head, sep, verb = params[last].rpartition(":")
    if sep:
        if verb not in _VERBS:
            raise HttpError(404, f"unknown method :{verb[:32]}; use :predict")
        params[last] = head
    name, version, label = params["model"], params.get("version"), params.get("label")
    if version is not None and not (version.isascii() and version.isdigit()):
        raise InvalidArgument(
            f"invalid version {version[:64]!r}: a version is a number; use /labels/{{label}} "
            "for an alias"
        )
    return name, version if version is not None else label, verb if sep else None
