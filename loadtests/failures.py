"""Failure kinds: short, stable strings a summary can count ("HTTP 503", "gRPC UNAVAILABLE").

Standard library only (it runs inside the locust process).
"""

from __future__ import annotations

import errno


class RequestFailure(Exception):
    """What a locust user reports for a failed request; ``str()`` is the failure kind."""


def exception_kind(exc: BaseException) -> str:
    """A kind for a transport exception, without addresses or other per-request detail."""
    if isinstance(exc, RequestFailure):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return "timeout"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return type(exc).__name__


def http_failure(
    status: int, body: bytes | None, error: BaseException | None, expect: bytes
) -> str | None:
    """The failure kind of one HTTP exchange, or ``None`` when it is good.

    Good means a 2xx status and, when ``expect`` is given, a body that contains it (a 200
    with an empty or foreign body is a failure too: some servers hide errors that way).
    """
    if status <= 0:
        return exception_kind(error) if error is not None else "no response"
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if expect and (body is None or expect not in body):
        return f"bad response (no {expect.decode('ascii', 'replace')})"
    return None
