"""Protocol-neutral errors shared by every Truce package.

Every failure a user can cause or observe is a ``TruceError`` carrying an ``ErrorCode``.
The code, not the exception class, decides the HTTP status and the gRPC status
(``gateway/status.py`` holds the one table), and the CLI exit code.

    TruceError(code, message)
    ├── InvalidArgument        bad request or bad CLI argument            (400 / INVALID_ARGUMENT)
    ├── NotFound               unknown model, version, alias or file      (404 / NOT_FOUND)
    ├── AlreadyExists          name or version taken                      (409 / ALREADY_EXISTS)
    ├── FailedPrecondition     state does not allow it (not ready)  (400 / FAILED_PRECONDITION)
    ├── IntegrityError         artifact checksum mismatch                 (500 / DATA_LOSS)
    ├── Unavailable            overloaded, shutting down, remote down     (503 / UNAVAILABLE)
    └── MissingDependency      an optional extra is not installed         (501 / UNIMPLEMENTED)

Messages are written for the person who has to fix the problem: what is wrong, then what
to do. They never contain file-system paths of the server, stack traces or secrets.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Canonical error codes; mapped to transports in exactly one place."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    DATA_LOSS = "DATA_LOSS"
    INTERNAL = "INTERNAL"


class TruceError(Exception):
    """Base of every error Truce reports to a user."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidArgument(TruceError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(TruceError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(TruceError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(TruceError):
    code = ErrorCode.FAILED_PRECONDITION


class IntegrityError(TruceError):
    code = ErrorCode.DATA_LOSS


class Unavailable(TruceError):
    code = ErrorCode.UNAVAILABLE


class MissingDependency(TruceError):
    """An optional extra (torch, tensorflow, onnx, tflite, ...) is not installed."""

    code = ErrorCode.UNIMPLEMENTED

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs {package}, which is not installed: "
            f"pip install 'truce[{extra}]' (or 'make demo' / 'make test' for everything)"
        )
