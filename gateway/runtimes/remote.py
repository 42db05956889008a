"""The ``remote`` runtime: a model version served by another server, forwarded to.

The version's artifact is ``remote.json`` (``remote_target.RemoteConfig``): the URL of the
model on a TorchServe, TF Serving or Open Inference Protocol v2 server (REST or gRPC, chosen
by the URL, see ``remote_target``). Everything in front of the runtime is the same as for a
local model: the signature check, batching (a batch is forwarded as one request), the queue,
limits, deadlines, metrics and the error table.

    RemoteRuntime ─► RemoteClient: OipHttp | OipGrpc | TorchServeHttp | TorchServeGrpc
                                   | TFServingHttp | TFServingGrpc
                                   (remote_http.py, remote_grpc.py; errors: remote_errors.py)

Loading only validates the configuration and opens a client: it does not contact the
remote, so a remote that is down when the gateway starts makes requests fail with 503
until it is back, instead of marking the model FAILED for good. The gateway's registry
refuses URLs outside ``allowed_remote_urls`` before a runtime is opened; ``options``
may carry the same list (``allowed_remote_urls``) to have the runtime check it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from gateway.runtimes.base import Arrays, DeclaredSignature, Runtime, RuntimeSpec
from gateway.runtimes.remote_errors import bad_answer
from gateway.runtimes.remote_grpc import OipGrpc, TFServingGrpc, TorchServeGrpc
from gateway.runtimes.remote_http import OipHttp, TFServingHttp, TorchServeHttp
from gateway.runtimes.remote_target import (
    RemoteConfig,
    Target,
    check_allowed,
    parse_target,
    read_config,
)
from model_store.signature import TensorSpec
from truce.errors import FailedPrecondition


class RemoteClient(Protocol):
    """A connection to one remote model."""

    def predict(self, inputs: Arrays, outputs: Sequence[TensorSpec]) -> Arrays:
        """Run the model; ``outputs`` are the ones wanted (empty: whatever it returns)."""
        ...

    def signature(self) -> DeclaredSignature:
        """The model's tensors per the remote's metadata API (empty where it has none)."""
        ...

    def close(self) -> None: ...


_CLIENTS: dict[tuple[str, str], type[OipHttp | OipGrpc | TorchServeHttp | TorchServeGrpc
                                     | TFServingHttp | TFServingGrpc]] = {
    ("oip", "http"): OipHttp,
    ("oip", "grpc"): OipGrpc,
    ("torchserve", "http"): TorchServeHttp,
    ("torchserve", "grpc"): TorchServeGrpc,
    ("tfserving", "http"): TFServingHttp,
    ("tfserving", "grpc"): TFServingGrpc,
}  # fmt: skip


def open_client(target: Target) -> RemoteClient:
    """The client for ``target``'s protocol and transport."""
    return _CLIENTS[target.protocol, target.transport](target)


class RemoteRuntime(Runtime):
    """Forwards every (batched) request to the remote model (see the module docstring)."""

    formats = ("remote",)

    def __init__(self, spec: RuntimeSpec, config: RemoteConfig | None = None) -> None:
        super().__init__(spec)
        self._config = config
        self.target: Target | None = None
        self._client: RemoteClient | None = None

    def _load(self) -> None:
        config = self._config or read_config(self.spec.artifact)
        allowed = self.spec.options.get("allowed_remote_urls")
        if allowed is not None:
            check_allowed(config.url, list(allowed))
        self.target = parse_target(config)
        self._client = open_client(self.target)

    def _client_or_fail(self) -> RemoteClient:
        if self._client is None:
            raise FailedPrecondition("model is not loaded")
        return self._client

    def _predict(self, inputs: Arrays) -> Arrays:
        client = self._client_or_fail()
        sig = self.spec.signature
        wanted = list(sig.outputs) if sig is not None else []
        result = client.predict(inputs, wanted)
        if not wanted:
            return result
        out: Arrays = {}
        assert self.target is not None
        for spec in wanted:
            arr = result.get(spec.name)
            if arr is None:
                raise bad_answer(self.target.where, f"it did not return the output {spec.name!r}")
            out[spec.name] = _as_declared(arr, spec)
        return out

    def _unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _declared_signature(self) -> DeclaredSignature:
        return self._client_or_fail().signature()


def _as_declared(arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A numeric output in the signature's datatype (JSON answers carry none)."""
    want = spec.dtype
    if arr.dtype == want or spec.datatype == "BYTES" or arr.dtype.kind not in "biuf":
        return arr
    return arr.astype(want)
