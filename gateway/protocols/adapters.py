"""Small pieces every dialect adapter (TF Serving, TorchServe) shares: deadlines and gRPC errors.

- REST deadlines: the ``X-Request-Timeout`` header (seconds), as for the OIP endpoints,
  capped by ``max_request_timeout_s`` (``gateway/deadlines.py``).
- gRPC deadlines: the client's gRPC deadline, capped the same way.
- ``rpc``: a gRPC handler decorator that turns every failure into a precise status from the
  one table in ``gateway/status.py`` (anything unexpected is logged and answered INTERNAL,
  never UNKNOWN).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc

from gateway.deadlines import DeadlineSettings, deadline_after, deadline_exceeded
from gateway.status import grpc_status
from truce.errors import ErrorCode, InvalidArgument, TruceError

log = logging.getLogger(__name__)

TIMEOUT_HEADER = "x-request-timeout"

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Self = TypeVar("_Self")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_Handler = Callable[[_Self, _Req, Context], Awaitable[_Resp]]


def timeout_header(value: str | None) -> float | None:
    """The ``X-Request-Timeout`` header in seconds, if given; ``InvalidArgument`` if malformed."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument(f"{TIMEOUT_HEADER} must be a number of seconds >= 0")
    return seconds


def rest_deadline(settings: DeadlineSettings, headers: dict[str, str], start: float) -> float:
    """The deadline of a REST request that started at ``start`` (``time.monotonic()``)."""
    return deadline_after(settings, timeout_header(headers.get(TIMEOUT_HEADER)), start)


def grpc_deadline(settings: DeadlineSettings, context: Context) -> float:
    """The deadline of a gRPC call: the client's, capped; the server default without one."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise deadline_exceeded()
    return deadline_after(settings, remaining)


def media_type(headers: dict[str, str]) -> str:
    """The request's media type, lower case, without parameters (``""`` when absent)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def rpc(fn: _Handler[_Self, _Req, _Resp]) -> _Handler[_Self, _Req, _Resp]:
    """Turn every failure of a unary gRPC handler into a precise status (never UNKNOWN)."""

    @functools.wraps(fn)
    async def handler(self: _Self, request: _Req, context: Context) -> _Resp:
        try:
            return await fn(self, request, context)
        except TruceError as exc:
            await context.abort(grpc_status(exc.code), exc.message)
        except Exception:
            log.exception("gRPC %s failed", fn.__name__)
            await context.abort(
                grpc_status(ErrorCode.INTERNAL), "internal error; the server log has details"
            )
        raise AssertionError("context.abort returned")  # pragma: no cover

    return handler
