"""Core request/response types shared by every protocol adapter and the dataplane.

Protocol adapters (``gateway/protocols/*``) convert wire messages to these and back; they
never see a runtime. Tensors are numpy arrays; BYTES tensors are object arrays of ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from model_store.signature import TensorSpec


@dataclass
class InferRequest:
    """One inference request, after decoding and before validation against the signature."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    #: output names the client asked for; ``None`` means all of them
    requested_outputs: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: absolute ``time.monotonic()`` deadline, already capped by the server maximum
    deadline: float | None = None
    #: the protocol it came in by (``rest``, ``grpc``, ...), for metrics and logs
    protocol: str = "rest"


@dataclass
class InferResponse:
    """The outputs of one request, in signature order, for the version that served it."""

    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    output_specs: list[TensorSpec]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelMetadata:
    """OIP model metadata for one served version."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: the version the request named (a number, or the one its alias points at)
    version: str | None = None


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]


class DataPlaneAPI(Protocol):
    """What protocol adapters may call. ``version`` is a number, an alias, or ``None``."""

    def live(self) -> bool: ...

    def ready(self) -> bool: ...

    def server_metadata(self) -> ServerMetadata: ...

    def model_ready(self, name: str, version: str | None = None) -> bool: ...

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata: ...

    async def infer(
        self, name: str, version: str | None, request: InferRequest
    ) -> InferResponse: ...
