"""Open Inference Protocol v2 over gRPC: ``inference.GRPCInferenceService`` on grpc.aio.

Every RPC is convert -> ``DataPlaneAPI`` call -> convert back (``grpc_codec``); nothing here
knows a runtime. Failures are ``TruceError``s whose code picks the gRPC status from the one
table in ``gateway/status.py``; anything else is logged and answered INTERNAL, so a client
never sees UNKNOWN. Message size limits are channel options of the server
(``grpc_server_options``): grpc rejects a larger message with RESOURCE_EXHAUSTED before the
servicer sees it.

``add_to_server`` also registers the standard health service (``grpc.health.v1.Health``,
answering from the dataplane's readiness at every call) and server reflection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway.deadlines import deadline_after, deadline_exceeded
from gateway.protocols.adapters import rpc
from gateway.protocols.oip import grpc_codec as codec
from gateway.protocols.oip.generated import grpc_service_pb2 as pb
from gateway.protocols.oip.generated import grpc_service_pb2_grpc as pb_grpc
from gateway.protocols.oip.rest_codec import timeout_parameter
from gateway.types import DataPlaneAPI
from truce.errors import InvalidArgument

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
#: how often a health Watch stream re-reads readiness
HEALTH_WATCH_INTERVAL_S = 1.0


class GrpcSettings(Protocol):
    """The fields of ``gateway.settings.Settings`` this adapter reads."""

    @property
    def grpc_max_message_bytes(self) -> int: ...

    @property
    def request_timeout_s(self) -> float: ...

    @property
    def max_request_timeout_s(self) -> float: ...

    @property
    def max_tensor_elements(self) -> int: ...


def grpc_server_options(settings: GrpcSettings) -> list[tuple[str, int]]:
    """Channel options for ``grpc.aio.server(options=...)``: message size limits.

    ``so_reuseport`` is off so that a port already taken fails to bind instead of silently
    sharing it with another process.
    """
    limit = int(settings.grpc_max_message_bytes)
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
    ]


def _version(value: str) -> str | None:
    return value or None


def _model_name(value: str) -> str:
    if not value:
        raise InvalidArgument("the request names no model: set the model name")
    return value


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` backed by a ``DataPlaneAPI``."""

    def __init__(self, dataplane: DataPlaneAPI, settings: GrpcSettings) -> None:
        self._dp = dataplane
        self._settings = settings
        self._max_elements = int(settings.max_tensor_elements)

    @rpc
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dp.live())

    @rpc
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dp.ready())

    @rpc
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelReadyResponse:
        ready = self._dp.model_ready(_model_name(request.name), _version(request.version))
        return pb.ModelReadyResponse(ready=ready)

    @rpc
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerMetadataResponse:
        meta = self._dp.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta.name, version=meta.version, extensions=meta.extensions
        )

    @rpc
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelMetadataResponse:
        meta = self._dp.model_metadata(_model_name(request.name), _version(request.version))
        return codec.encode_model_metadata(meta)

    @rpc
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        name = _model_name(request.model_name)
        req = codec.decode_infer_request(request, max_elements=self._max_elements)
        req.deadline = self._deadline(context, req.parameters)
        resp = await self._dp.infer(name, _version(request.model_version), req)
        return codec.encode_infer_response(resp, raw=bool(request.raw_input_contents))

    def _deadline(
        self, context: grpc.aio.ServicerContext[Any, Any], parameters: dict[str, Any]
    ) -> float:
        """The sooner of the gRPC deadline and Triton's ``parameters.timeout`` (microseconds),
        capped by the server maximum; the server default when the client gives neither."""
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise deadline_exceeded()
        given = [t for t in (remaining, timeout_parameter(parameters)) if t is not None]
        return deadline_after(self._settings, min(given) if given else None)


class ReadinessHealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health`` answering from the dataplane's readiness, never stale.

    The overall service ``""`` and ``inference.GRPCInferenceService`` are SERVING while the
    server is ready (models loaded, not shutting down); any other name is NOT_FOUND.
    Liveness probes should use ``ServerLive`` instead.
    """

    def __init__(self, dataplane: DataPlaneAPI, *, interval_s: float = HEALTH_WATCH_INTERVAL_S):
        self._dp = dataplane
        self._interval_s = interval_s

    def _status(self, service: str) -> int | None:
        if service not in ("", SERVICE_NAME):
            return None
        try:
            ready = self._dp.ready()
        except Exception:
            log.exception("readiness check failed")
            ready = False
        serving = health_pb2.HealthCheckResponse.SERVING
        return int(serving if ready else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: int | None = None
        while True:  # ends when the client cancels the stream
            status = self._status(request.service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self._interval_s)


def _reflection_pool(files: Sequence[FileDescriptor]) -> descriptor_pool.DescriptorPool:
    """One pool with every service this server offers: each stub set lives in a private pool
    (see the Makefile's ``proto`` target), so their files are copied in, dependencies first."""
    pool = descriptor_pool.DescriptorPool()
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dep in file.dependencies:
            add(dep)
        pool.AddSerializedFile(file.serialized_pb)

    for file in files:
        add(file)
    return pool


def add_to_server(
    server: grpc.aio.Server,
    dataplane: DataPlaneAPI,
    settings: GrpcSettings,
    also_reflect: Sequence[ServiceDescriptor] = (),
) -> None:
    """Register the inference service, health checking and reflection on ``server``.

    Create the server with ``grpc.aio.server(options=grpc_server_options(settings))`` so the
    message size limit applies. ``also_reflect``: the other services on the same server (the
    TF Serving and TorchServe dialects), listed and described by reflection too.
    """
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(dataplane, settings), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(ReadinessHealthServicer(dataplane), server)
    files = [pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]
    files += [service.file for service in also_reflect]
    names = [SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME]
    names += [service.full_name for service in also_reflect]
    reflection.enable_server_reflection(names, server, pool=_reflection_pool(files))
