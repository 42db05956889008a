"""Request deadlines: one rule for every protocol.

A deadline is an absolute ``time.monotonic()`` value. A client may shorten it (the REST
``X-Request-Timeout`` header or ``parameters.timeout``, the gRPC deadline), never extend it
past ``max_request_timeout_s``; a request that gives none gets ``request_timeout_s``.
"""

from __future__ import annotations

import time
from typing import Protocol

from truce.errors import ErrorCode, TruceError


class DeadlineSettings(Protocol):
    @property
    def request_timeout_s(self) -> float: ...

    @property
    def max_request_timeout_s(self) -> float: ...


def deadline_after(
    settings: DeadlineSettings, timeout_s: float | None, now: float | None = None
) -> float:
    """The deadline for a client timeout in seconds (``None``: the server default)."""
    now = time.monotonic() if now is None else now
    if timeout_s is None:
        return now + settings.request_timeout_s
    return now + min(max(timeout_s, 0.0), settings.max_request_timeout_s)


def deadline_exceeded() -> TruceError:
    """The error of a request whose deadline passed (504 / DEADLINE_EXCEEDED)."""
    return TruceError(
        "the request did not finish within its deadline; give it more time or retry when "
        "the model is less busy",
        ErrorCode.DEADLINE_EXCEEDED,
    )
