"""The gRPC floor: a bare ``grpc.aio`` server whose ModelInfer only parses the request.

No model, no validation: it deserializes the ``ModelInferRequest`` and answers an empty
``ModelInferResponse``. Its c=1 latency is what the gRPC transport plus the Python load
generator cost by themselves, so the report can tell the gateway's share from the client's.

    python -m loadtests.bench.grpc_floor --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc

from gateway.protocols.oip.generated import grpc_service_pb2 as pb


async def _infer(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    return pb.ModelInferResponse(model_name=request.model_name, id=request.id)


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)])
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                _infer,
                request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelInferResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    asyncio.run(serve(p.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
