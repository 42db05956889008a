"""A tiny TF Serving gRPC server built from ``tensorflow-serving-api``'s servicer base.

No TF Serving binary can be installed here, so the tfserving-grpc load-test scenario runs
against this: real gRPC, real TF Serving messages, a model ``tiny`` with signature
``serving_default`` taking ``x`` FP32 [-1, 4] and answering ``y = sum(x, axis=1)``. A request
that does not match is refused with INVALID_ARGUMENT, so a wrong payload shows as errors.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc


def start_tfserving(port: int = 0) -> tuple[grpc.Server, int]:
    """Start the server on 127.0.0.1; returns it and its port."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
        def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
            if request.model_spec.name != "tiny":
                context.abort(grpc.StatusCode.NOT_FOUND, "no model")
            sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
            sig.inputs["x"].dtype = tf.float32.as_datatype_enum
            for size in (-1, 4):
                sig.inputs["x"].tensor_shape.dim.add(size=size)
            sig.outputs["y"].dtype = tf.float32.as_datatype_enum
            defs = get_model_metadata_pb2.SignatureDefMap()
            defs.signature_def["serving_default"].CopyFrom(sig)
            reply = get_model_metadata_pb2.GetModelMetadataResponse()
            reply.model_spec.CopyFrom(request.model_spec)
            reply.metadata["signature_def"].Pack(defs)
            return reply

        def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
            if request.model_spec.name != "tiny" or set(request.inputs) != {"x"}:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected model tiny, input x")
            x = tf.make_ndarray(request.inputs["x"])
            if x.dtype != "float32" or x.ndim != 2 or x.shape[1] != 4:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad x {x.dtype} {x.shape}")
            reply = predict_pb2.PredictResponse()
            reply.outputs["y"].CopyFrom(tf.make_tensor_proto(x.sum(axis=1)))
            return reply

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound
