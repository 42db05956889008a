"""The DataPlane: what every protocol adapter calls (``gateway.types.DataPlaneAPI``).

``infer`` is: route (registry) -> validate the inputs against the version's signature and
the requested outputs against its outputs (a precise 400 before the model runs) -> queue on
the version's batcher -> await its rows until the deadline -> keep the requested outputs.
Every outcome is counted in the metrics. Failures are ``TruceError``s; anything unexpected
is logged with its traceback and surfaces as INTERNAL with a message free of internals.

Deadlines: adapters set ``InferRequest.deadline`` with ``gateway.deadlines.deadline_after``;
a request without one gets ``request_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.deadlines import deadline_exceeded
from gateway.registry import Registry
from gateway.served import PLATFORMS, ModelState
from gateway.settings import Settings
from gateway.types import InferRequest, InferResponse, ModelMetadata, ServerMetadata
from model_store.signature import TensorSpec, check_inputs
from truce import __version__
from truce.errors import ErrorCode, InvalidArgument, TruceError, Unavailable

log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "model_repository"]


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(deadline_exceeded())


class DataPlane:
    """Implements ``DataPlaneAPI`` over a ``Registry`` (see the module docstring)."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = registry.metrics
        self._draining = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None

    # --- health and metadata ------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.registry.started and not self._draining

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="truce", version=__version__, extensions=list(EXTENSIONS))

    def model_ready(self, name: str, version: str | None = None) -> bool:
        sv = self.registry.lookup(name, version)
        return sv.state is ModelState.READY and not self.registry.stuck(sv)

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        sv = self.registry.lookup(name, version)
        manifest = sv.manifest
        if manifest is None:
            raise Unavailable(f"model {sv.ref} is still loading; retry shortly")
        return ModelMetadata(
            name=name,
            versions=self.registry.served_versions(name),
            platform=PLATFORMS.get(manifest.format, manifest.format),
            inputs=list(manifest.signature.inputs),
            outputs=list(manifest.signature.outputs),
            version=str(sv.version),
        )

    # --- shutdown -----------------------------------------------------------------------
    def draining(self) -> bool:
        """True once shutdown has begun."""
        return self._draining

    def begin_drain(self) -> None:
        """Readiness turns false and new inference requests are refused with 503."""
        self._draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no inference request is in flight; False on timeout."""
        if self._inflight == 0:
            return True
        self._idle = self._idle or asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- inference ----------------------------------------------------------------------
    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        start = time.monotonic()
        model_label, version_label, code = "", "", "OK"
        try:
            if self._draining:
                raise Unavailable("the server is shutting down; retry on another replica")
            sv = self.registry.resolve(name, version)
            model_label, version_label = name, sv.label
            manifest = sv.manifest
            batcher = sv.batcher
            assert manifest is not None and batcher is not None  # READY implies both
            signature = manifest.signature
            check_inputs(signature.inputs, request.inputs)
            specs = _output_specs(signature.outputs, request.requested_outputs, sv.ref)
            deadline = request.deadline or (start + self.settings.request_timeout_s)
            remaining = deadline - start
            if remaining <= 0:
                raise deadline_exceeded()
            future = batcher.submit(request.inputs, deadline)
            self._inflight += 1
            timer = asyncio.get_running_loop().call_later(remaining, _expire, future)
            try:
                outputs = await future
            finally:
                timer.cancel()
                self._inflight -= 1
                if self._inflight == 0 and self._idle is not None:
                    self._idle.set()
            result = {}
            for spec in specs:
                arr = outputs.get(spec.name)
                if arr is None:
                    raise TruceError(
                        f"model {sv.ref} did not return its output {spec.name!r}",
                        ErrorCode.INTERNAL,
                    )
                result[spec.name] = arr
            return InferResponse(name, sv.label, result, specs, id=request.id)
        except TruceError as exc:
            code = exc.code
            raise
        except asyncio.CancelledError:
            code = ErrorCode.CANCELLED
            raise
        except Exception:
            code = ErrorCode.INTERNAL
            log.exception("inference on %s failed", name)
            raise TruceError(
                "the model failed while running the request; the server log has details",
                ErrorCode.INTERNAL,
            ) from None
        finally:
            # unknown names are counted without labels: clients must not create series
            elapsed = time.monotonic() - start
            self.metrics.request(model_label, version_label, request.protocol, str(code), elapsed)


def _output_specs(
    outputs: list[TensorSpec], requested: list[str] | None, ref: str
) -> list[TensorSpec]:
    if requested is None:
        return outputs
    by_name = {s.name: s for s in outputs}
    specs = []
    for name in requested:
        spec = by_name.get(name)
        if spec is None:
            raise InvalidArgument(
                f"model {ref} has no output {name!r}; its outputs are {', '.join(by_name)}"
            )
        specs.append(spec)
    return specs
