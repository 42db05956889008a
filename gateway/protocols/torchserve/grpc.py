"""TorchServe's gRPC inference API on the gateway's gRPC port, for every stored model.

    org.pytorch.serve.grpc.inference.InferenceAPIsService
        Ping                 health '{"status": "Healthy"}' (or "Unhealthy")
        Predictions          PredictionsRequest{model_name, model_version, input} ->
                             PredictionResponse{prediction: the JSON a REST call returns}
        StreamPredictions    the same, as a stream of one response
        StreamPredictions2   one response per request; failures go in the response's
                             ``status`` (google.rpc.Status), as TorchServe does

The ``input`` map follows TorchServe's handlers: ``data`` holds a whole body (JSON tensor,
``.npy``, raw bytes for a BYTES input), or one entry per model input (``codec``). Clients
generated from TorchServe 0.12's ``inference.proto`` work unchanged. Failures of the unary
calls map through ``gateway/status.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from google.protobuf import empty_pb2

from gateway.protocols.adapters import Context, grpc_deadline, rpc
from gateway.protocols.torchserve import codec
from gateway.protocols.torchserve.generated import inference_pb2 as pb
from gateway.protocols.torchserve.generated import inference_pb2_grpc as pb_grpc
from gateway.status import grpc_status
from gateway.types import DataPlaneAPI, InferRequest
from truce.errors import ErrorCode, InvalidArgument, TruceError

log = logging.getLogger(__name__)

PROTOCOL = "torchserve-grpc"
SERVICE = "org.pytorch.serve.grpc.inference.InferenceAPIsService"


class InferenceServicer(pb_grpc.InferenceAPIsServiceServicer):  # type: ignore[misc]
    """TorchServe's ``InferenceAPIsService`` backed by a ``DataPlaneAPI``."""

    def __init__(self, dataplane: DataPlaneAPI, settings: Any) -> None:
        self._dp = dataplane
        self._settings = settings

    @rpc
    async def Ping(self, request: empty_pb2.Empty, context: Context) -> pb.TorchServeHealthResponse:
        status = "Healthy" if self._dp.ready() else "Unhealthy"
        return pb.TorchServeHealthResponse(health=orjson.dumps({"status": status}).decode())

    @rpc
    async def Predictions(
        self, request: pb.PredictionsRequest, context: Context
    ) -> pb.PredictionResponse:
        return await self._predict(request, context)

    async def StreamPredictions(
        self, request: pb.PredictionsRequest, context: Context
    ) -> AsyncIterator[pb.PredictionResponse]:
        try:
            response = await self._predict(request, context)
        except TruceError as exc:
            await context.abort(grpc_status(exc.code), exc.message)
        except Exception:
            log.exception("gRPC StreamPredictions failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
        yield response

    async def StreamPredictions2(
        self, requests: AsyncIterator[pb.PredictionsRequest], context: Context
    ) -> AsyncIterator[pb.PredictionResponse]:
        async for request in requests:
            try:
                response = await self._predict(request, context)
            except TruceError as exc:
                response = _failed(request, exc.code, exc.message)
            except Exception:
                log.exception("gRPC StreamPredictions2 failed")
                response = _failed(request, ErrorCode.INTERNAL, "internal error; see the log")
            yield response

    async def _predict(
        self, request: pb.PredictionsRequest, context: Context
    ) -> pb.PredictionResponse:
        name = request.model_name
        if not name:
            raise InvalidArgument("model_name is empty: name the model")
        version = request.model_version or None
        meta = self._dp.model_metadata(name, version)
        inputs = codec.decode_input_map(
            request.input,
            meta.inputs,
            max_depth=self._settings.max_json_depth,
            max_elements=self._settings.max_tensor_elements,
        )
        deadline = grpc_deadline(self._settings, context)
        req = InferRequest(inputs=inputs, deadline=deadline, protocol=PROTOCOL)
        resp = await self._dp.infer(name, version, req)
        out = pb.PredictionResponse(prediction=codec.encode_outputs(resp.outputs))
        if request.HasField("sequence_id"):
            out.sequence_id = request.sequence_id
        return out


def _failed(request: pb.PredictionsRequest, code: ErrorCode, message: str) -> pb.PredictionResponse:
    out = pb.PredictionResponse()
    out.status.code = grpc_status(code).value[0]
    out.status.message = message
    if request.HasField("sequence_id"):
        out.sequence_id = request.sequence_id
    return out


#: the services this module serves, for gRPC reflection
SERVICES = (pb.DESCRIPTOR.services_by_name["InferenceAPIsService"],)


def add_to_server(server: grpc.aio.Server, dataplane: DataPlaneAPI, settings: Any) -> None:
    """Register TorchServe's inference service on ``server``.

    ``settings``: ``gateway.settings.Settings`` (deadline, JSON depth and tensor-size fields)."""
    pb_grpc.add_InferenceAPIsServiceServicer_to_server(
        InferenceServicer(dataplane, settings), server
    )
