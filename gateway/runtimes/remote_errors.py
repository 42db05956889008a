"""What a failed remote call becomes, for every remote protocol: one mapping.

    cannot connect, connection reset, TLS failure     Unavailable (503 / UNAVAILABLE)
    no answer within timeout_s, remote 408/504        DEADLINE_EXCEEDED (504)
    remote 400, 413, 422, other 4xx;                  InvalidArgument (400) with the remote's
      gRPC INVALID_ARGUMENT, FAILED_PRECONDITION,       own message: the client sent bad input
      OUT_OF_RANGE
    remote 401/403/404, 429, 503, TorchServe's        Unavailable (503): the gateway's
      InvalidKeyException (a 400); gRPC                 configuration or the remote's load, not
      UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND,    the client, must change
      RESOURCE_EXHAUSTED, UNAVAILABLE
    anything else (remote 5xx, an unreadable answer)  INTERNAL (500), with the remote's message

Messages name the remote by host and port only, never a token or a server path.
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson

from gateway.runtimes.common import first_line
from truce.errors import ErrorCode, InvalidArgument, TruceError, Unavailable

_RETRY_LATER = frozenset({401, 403, 404, 429, 503})
_BAD_INPUT_GRPC = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_RETRY_LATER_GRPC = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    }
)


def unreachable(where: str, why: str) -> Unavailable:
    return Unavailable(f"{where} is unreachable ({why}); retry later")


def timed_out(where: str, timeout_s: float) -> TruceError:
    return TruceError(f"{where} did not answer within {timeout_s:g} s", ErrorCode.DEADLINE_EXCEEDED)


def remote_message(body: bytes) -> str:
    """The message of a remote error body: OIP/TF Serving ``error``, TorchServe ``message``."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        for key in ("error", "message", "detail"):
            if isinstance(doc.get(key), str):
                return _short(doc[key])
    return _short(body.decode("utf-8", "replace")) or "no message"


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return first_line(ValueError(line), 300) if line else ""


def http_error(where: str, status: int, body: bytes, timeout_s: float) -> TruceError:
    """The error for a remote HTTP answer with a non-2xx ``status``."""
    message = remote_message(body)
    if status in (408, 504):
        return timed_out(where, timeout_s)
    if status in _RETRY_LATER or b'"InvalidKeyException"' in body:  # TorchServe: 400
        return Unavailable(f"{where} answered {status}: {message}")
    if 400 <= status < 500:
        return InvalidArgument(f"{where} refused the request: {message}")
    return TruceError(f"{where} failed ({status}): {message}", ErrorCode.INTERNAL)


def grpc_error(where: str, exc: grpc.RpcError, timeout_s: float) -> TruceError:
    """The error for a failed remote gRPC call."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = _short(exc.details() or "") if hasattr(exc, "details") else ""
    message = details or str(code.name if code else "unknown")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return timed_out(where, timeout_s)
    if code is grpc.StatusCode.UNAVAILABLE:
        return unreachable(where, message)
    if code in _BAD_INPUT_GRPC:
        return InvalidArgument(f"{where} refused the request: {message}")
    if code in _RETRY_LATER_GRPC:
        return Unavailable(f"{where} answered {code.name}: {message}")
    return TruceError(f"{where} failed ({code.name}): {message}", ErrorCode.INTERNAL)


def bad_answer(where: str, why: str) -> TruceError:
    """A remote answer that does not match the model's signature."""
    return TruceError(f"{where} sent an answer Truce cannot use: {why}", ErrorCode.INTERNAL)
