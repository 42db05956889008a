"""The one table from canonical error codes to HTTP and gRPC statuses.

Every protocol adapter maps a ``TruceError`` through this table and nowhere else, so REST and
gRPC always agree on what a failure is (the contract suite checks it). Codes for which a
client should retry later (``UNAVAILABLE``, ``RESOURCE_EXHAUSTED``) also carry a
``Retry-After`` header over HTTP.
"""

from __future__ import annotations

import grpc

from truce.errors import ErrorCode

#: code -> (HTTP status, gRPC status)
STATUS: dict[ErrorCode, tuple[int, grpc.StatusCode]] = {
    ErrorCode.INVALID_ARGUMENT: (400, grpc.StatusCode.INVALID_ARGUMENT),
    ErrorCode.NOT_FOUND: (404, grpc.StatusCode.NOT_FOUND),
    ErrorCode.ALREADY_EXISTS: (409, grpc.StatusCode.ALREADY_EXISTS),
    ErrorCode.FAILED_PRECONDITION: (400, grpc.StatusCode.FAILED_PRECONDITION),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ErrorCode.RESOURCE_EXHAUSTED: (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ErrorCode.UNAVAILABLE: (503, grpc.StatusCode.UNAVAILABLE),
    ErrorCode.DEADLINE_EXCEEDED: (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    # 499: the de-facto "client closed request" status; the client is gone and never sees it
    ErrorCode.CANCELLED: (499, grpc.StatusCode.CANCELLED),
    ErrorCode.UNAUTHENTICATED: (401, grpc.StatusCode.UNAUTHENTICATED),
    ErrorCode.PERMISSION_DENIED: (403, grpc.StatusCode.PERMISSION_DENIED),
    ErrorCode.UNIMPLEMENTED: (501, grpc.StatusCode.UNIMPLEMENTED),
    ErrorCode.DATA_LOSS: (500, grpc.StatusCode.DATA_LOSS),
    ErrorCode.INTERNAL: (500, grpc.StatusCode.INTERNAL),
}

#: codes whose HTTP responses carry ``Retry-After``
RETRYABLE: frozenset[ErrorCode] = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED})


def http_status(code: ErrorCode) -> int:
    """The HTTP status for ``code`` (500 for a code missing from the table)."""
    entry = STATUS.get(code)
    return entry[0] if entry is not None else 500


def grpc_status(code: ErrorCode) -> grpc.StatusCode:
    """The gRPC status for ``code`` (INTERNAL for a code missing from the table, never UNKNOWN)."""
    entry = STATUS.get(code)
    return entry[1] if entry is not None else grpc.StatusCode.INTERNAL
