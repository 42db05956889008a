"""TF Serving's gRPC API on the gateway's gRPC port, for every stored model.

    tensorflow.serving.PredictionService
        Predict            any model; TensorProto as tensor_content or typed values
        GetModelMetadata   metadata_field ["signature_def"]: one "serving_default" SignatureDef
        Classify, Regress  INVALID_ARGUMENT: Truce models have one predict signature
        MultiInference     UNIMPLEMENTED
    tensorflow.serving.ModelService
        GetModelStatus     the served versions (AVAILABLE) or the named one
        HandleReloadConfigRequest   UNIMPLEMENTED: models are managed with the Truce store

``model_spec`` names the version by ``version`` (a number) or ``version_label`` (an alias).
The stubs are generated from the pinned ``tensorflow-serving-api`` descriptors into a private
pool (``gateway/protocols/protogen.py``): wire-identical, without importing TensorFlow.
Failures map through ``gateway/status.py`` like every other adapter's.
"""

from __future__ import annotations

from typing import Any, Protocol

import grpc

from gateway.deadlines import DeadlineSettings
from gateway.protocols.adapters import Context, grpc_deadline, rpc
from gateway.protocols.tfserving import grpc_codec as codec
from gateway.protocols.tfserving.dtypes import SIGNATURE
from gateway.protocols.tfserving.generated.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from gateway.types import DataPlaneAPI
from truce.errors import ErrorCode, InvalidArgument, TruceError

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


class TFServingSettings(DeadlineSettings, Protocol):
    @property
    def max_tensor_elements(self) -> int: ...


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.PredictionService`` backed by a ``DataPlaneAPI``."""

    def __init__(self, dataplane: DataPlaneAPI, settings: TFServingSettings) -> None:
        self._dp = dataplane
        self._settings = settings
        self._max_elements = int(settings.max_tensor_elements)

    @rpc
    async def Predict(
        self, request: predict_pb2.PredictRequest, context: Context
    ) -> predict_pb2.PredictResponse:
        name = codec.model_name(request.model_spec)
        version = codec.model_version(request.model_spec)
        req, raw = codec.decode_predict(request, self._max_elements)
        req.deadline = grpc_deadline(self._settings, context)
        resp = await self._dp.infer(name, version, req)
        return codec.encode_predict(resp, raw=raw)

    @rpc
    async def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Context
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        codec.check_metadata_fields(request.metadata_field)
        name = codec.model_name(request.model_spec)
        version = codec.model_version(request.model_spec)
        meta = self._dp.model_metadata(name, version)
        shown = version if version is not None and version.isdigit() else None
        return codec.encode_metadata(meta, shown)

    @rpc
    async def Classify(
        self, request: classification_pb2.ClassificationRequest, context: Context
    ) -> classification_pb2.ClassificationResponse:
        raise _no_signature(request.model_spec.name, "classify")

    @rpc
    async def Regress(
        self, request: regression_pb2.RegressionRequest, context: Context
    ) -> regression_pb2.RegressionResponse:
        raise _no_signature(request.model_spec.name, "regress")

    @rpc
    async def MultiInference(
        self, request: inference_pb2.MultiInferenceRequest, context: Context
    ) -> inference_pb2.MultiInferenceResponse:
        raise TruceError(
            "MultiInference is not supported: call Predict once per model",
            ErrorCode.UNIMPLEMENTED,
        )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.ModelService``: status reads only."""

    def __init__(self, dataplane: DataPlaneAPI) -> None:
        self._dp = dataplane

    @rpc
    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: Context
    ) -> get_model_status_pb2.GetModelStatusResponse:
        name = codec.model_name(request.model_spec)
        version = codec.model_version(request.model_spec)
        meta = self._dp.model_metadata(name, version)  # NotFound for unknown ones
        if version is None:
            return codec.encode_status([(v, True) for v in meta.versions])
        shown = meta.version or version  # a label is reported as the version it points at
        return codec.encode_status([(shown, self._dp.model_ready(name, version))])

    @rpc
    async def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: Context
    ) -> model_management_pb2.ReloadConfigResponse:
        raise TruceError(
            "reloading a model server config is not supported: register models with "
            "'truce models register' (the gateway loads them) or use the admin API",
            ErrorCode.UNIMPLEMENTED,
        )


def _no_signature(name: str, verb: str) -> InvalidArgument:
    return InvalidArgument(
        f"model {name[:80]!r} has no {verb} signature: Truce serves one predict signature "
        f"per model ({SIGNATURE}); call Predict instead"
    )


#: the services this module serves, for gRPC reflection
SERVICES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
)


def add_to_server(server: grpc.aio.Server, dataplane: DataPlaneAPI, settings: Any) -> None:
    """Register TF Serving's PredictionService and ModelService on ``server``.

    ``settings``: ``gateway.settings.Settings`` (the deadline and tensor-size fields)."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(dataplane, settings), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(dataplane), server)
