"""Remote model servers over gRPC: Open Inference Protocol v2, TorchServe and TF Serving.

One channel per runtime instance, client stubs only (Truce's own generated stubs; importing
them pulls in neither TensorFlow nor TorchServe). Tensors travel in their raw form
(``raw_input_contents``, ``tensor_content``). A bearer token, when configured, goes in the
``authorization`` metadata. Failures map through ``remote_errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from gateway.protocols.oip.generated import grpc_service_pb2 as oip_pb
from gateway.protocols.oip.generated import grpc_service_pb2_grpc as oip_grpc
from gateway.protocols.oip.grpc_codec import CONTENTS_FIELD
from gateway.protocols.oip.tensors import decode_raw, encode_raw
from gateway.protocols.tfserving.dtypes import oip_datatype
from gateway.protocols.tfserving.generated.tensorflow.core.framework import types_pb2
from gateway.protocols.tfserving.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2 as md,
)
from gateway.protocols.tfserving.generated.tensorflow_serving.apis import (
    predict_pb2,
    prediction_service_pb2_grpc,
)
from gateway.protocols.tfserving.grpc_codec import decode_tensor, encode_tensor
from gateway.protocols.torchserve.generated import inference_pb2, inference_pb2_grpc
from gateway.runtimes.base import Arrays, DeclaredSignature
from gateway.runtimes.remote_errors import bad_answer, grpc_error
from gateway.runtimes.remote_json import loads, outputs_from_json, torchserve_body
from gateway.runtimes.remote_target import Target
from model_store.signature import NUMPY_DTYPES, TensorSpec, datatype_of
from truce.errors import InvalidArgument, TruceError

MAX_MESSAGE = 256 << 20


class GrpcClient:
    """Calls to one remote gRPC server, with its errors mapped."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.where = target.where
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.enable_http_proxy", 0),
        ]
        if target.tls:
            creds = grpc.ssl_channel_credentials()
            self.channel = grpc.secure_channel(target.address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target.address, options=options)
        token = target.token()
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    def call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.target.config.timeout_s, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise grpc_error(self.where, exc, self.target.config.timeout_s) from None

    def close(self) -> None:
        self.channel.close()


class OipGrpc(GrpcClient):
    """``inference.GRPCInferenceService`` (Triton, KServe, another Truce)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.stub = oip_grpc.GRPCInferenceServiceStub(self.channel)

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        t = self.target
        request = oip_pb.ModelInferRequest(model_name=t.model, model_version=t.version or "")
        for name, arr in inputs.items():
            datatype = datatype_of(arr.dtype)
            request.inputs.add(name=name, datatype=datatype, shape=list(arr.shape))
            request.raw_input_contents.append(encode_raw(arr, datatype))
        for spec in outputs:
            request.outputs.add(name=spec.name)
        response = self.call(self.stub.ModelInfer, request)
        out: Arrays = {}
        try:
            for i, tensor in enumerate(response.outputs):
                shape = list(tensor.shape)
                if i < len(response.raw_output_contents):
                    raw = response.raw_output_contents[i]
                    out[tensor.name] = decode_raw(tensor.name, tensor.datatype, shape, raw)
                else:
                    out[tensor.name] = _typed(tensor, shape)
        except TruceError as exc:
            raise bad_answer(self.where, exc.message) from None
        return out

    def signature(self) -> DeclaredSignature:
        t = self.target
        request = oip_pb.ModelMetadataRequest(name=t.model, version=t.version or "")
        meta = self.call(self.stub.ModelMetadata, request)
        try:
            return DeclaredSignature(
                inputs=[TensorSpec(name=x.name, datatype=x.datatype, shape=list(x.shape))
                        for x in meta.inputs],
                outputs=[TensorSpec(name=x.name, datatype=x.datatype, shape=list(x.shape))
                         for x in meta.outputs],
            )  # fmt: skip
        except ValueError:
            raise bad_answer(self.where, "its model metadata has unknown datatypes") from None


def _typed(tensor: Any, shape: list[int]) -> np.ndarray:
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidArgument(f"output {tensor.name!r} has datatype {tensor.datatype!r}")
    values = list(getattr(tensor.contents, field))
    if tensor.datatype == "BYTES":
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    else:
        arr = np.array(values, dtype=NUMPY_DTYPES[tensor.datatype])
    if arr.size != int(np.prod(shape)):
        raise InvalidArgument(f"output {tensor.name!r} has {arr.size} values for shape {shape}")
    return arr.reshape(shape)


class TorchServeGrpc(GrpcClient):
    """TorchServe's ``InferenceAPIsService.Predictions``: the body under ``data``."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.stub = inference_pb2_grpc.InferenceAPIsServiceStub(self.channel)

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        body, _ = torchserve_body(inputs, self.target.config.body)
        request = inference_pb2.PredictionsRequest(
            model_name=self.target.model,
            model_version=self.target.version or "",
            input={"data": body},
        )
        response = self.call(self.stub.Predictions, request)
        return outputs_from_json(loads(response.prediction, self.where), outputs, self.where)

    def signature(self) -> DeclaredSignature:
        return DeclaredSignature()  # TorchServe has no tensor metadata


class TFServingGrpc(GrpcClient):
    """TF Serving's ``PredictionService`` (Predict, GetModelMetadata)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def _spec(self, spec: Any) -> None:
        t = self.target
        spec.name = t.model
        if t.version is not None and t.label:
            spec.version_label = t.version
        elif t.version is not None:
            spec.version.value = int(t.version)
        spec.signature_name = t.config.signature_name

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec)
        for name, arr in inputs.items():
            request.inputs[name].CopyFrom(encode_tensor(arr, datatype_of(arr.dtype), raw=True))
        request.output_filter.extend(s.name for s in outputs)
        response = self.call(self.stub.Predict, request)
        try:
            return {name: decode_tensor(name, proto)[0] for name, proto in response.outputs.items()}
        except TruceError as exc:
            raise bad_answer(self.where, exc.message) from None

    def signature(self) -> DeclaredSignature:
        request = md.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self.call(self.stub.GetModelMetadata, request)
        sigs = md.SignatureDefMap()
        key = self.target.config.signature_name or "serving_default"
        if not response.metadata["signature_def"].Unpack(sigs) or key not in sigs.signature_def:
            raise bad_answer(self.where, f"its metadata has no signature {key!r}")
        sig = sigs.signature_def[key]
        return DeclaredSignature(
            inputs=[tf_spec(n, i.dtype, _dims(i)) for n, i in sig.inputs.items()],
            outputs=[tf_spec(n, i.dtype, _dims(i)) for n, i in sig.outputs.items()],
        )


def _dims(info: Any) -> list[int] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return [int(d.size) for d in info.tensor_shape.dim]


def tf_spec(name: str, dtype: int | str, dims: list[int] | None) -> TensorSpec:
    """A TF Serving TensorInfo (enum or ``DT_*`` name) as a TensorSpec."""
    if dims is None:
        raise InvalidArgument(
            f"the remote tensor {name!r} has an unknown rank; give the signature with "
            "--input/--output"
        )
    value = types_pb2.DataType.Value(dtype) if isinstance(dtype, str) else dtype
    return TensorSpec(name=name, datatype=oip_datatype(name, value), shape=dims)
