"""TorchServe's management reads on the admin listener (like TorchServe's management port).

    GET /models                      {"models": [{"modelName", "modelUrl"}]}
    GET /models/{m}                  [description of the default (newest ready) version]
    GET /models/{m}/all              [description of every served version]
    GET /models/{m}/{version}        [description of that version (number or alias)]

Read-only: registering, scaling and unregistering stay with ``truce models`` and the OIP
repository extension. The admin listener's bearer token protects these routes too (TorchServe
0.11+ likewise requires its management key). Errors use TorchServe's error document.
"""

from __future__ import annotations

from typing import Any

from gateway.http_base import Request, Response, Router, json_response
from gateway.protocols.torchserve.rest import torchserve_errors
from gateway.registry import Registry
from gateway.served import ModelState, ServedVersion, shown
from truce.errors import NotFound


class TorchServeManagement:
    """TorchServe's ``ListModels`` and ``DescribeModel`` over the registry."""

    def __init__(self, registry: Registry, retry_after_s: int = 1) -> None:
        self.registry = registry
        self.retry_after_s = retry_after_s

    def add_routes(self, router: Router) -> None:
        wrap = self.retry_after_s
        router.add("GET", "/models", torchserve_errors(self.list_models, wrap))
        router.add("GET", "/models/{model}", torchserve_errors(self.describe, wrap))
        router.add("GET", "/models/{model}/{version}", torchserve_errors(self.describe, wrap))

    async def list_models(self, request: Request) -> Response:
        names = sorted({row["name"] for row in self.registry.index()})
        return json_response({"models": [{"modelName": n, "modelUrl": n} for n in names]})

    async def describe(self, request: Request) -> Response:
        name, version = request.params["model"], request.params.get("version")
        model = self.registry.model(name)
        if model is None or not model.versions:
            raise NotFound(f"Model not found: {shown(name)}")
        if version == "all":
            chosen = [sv for _, sv in sorted(model.versions.items())]
        elif version is None:
            chosen = [self.registry.lookup(name, None)]
        else:
            chosen = [self.registry.lookup(name, version)]
        return json_response([_describe(sv) for sv in chosen])


def _describe(sv: ServedVersion) -> dict[str, Any]:
    m = sv.manifest
    serving = m.serving if m is not None else None
    instances = serving.instances if serving is not None else 0
    worker = {
        ModelState.READY: "READY",
        ModelState.LOADING: "UNLOADED",
        ModelState.FAILED: "UNLOADED",
    }.get(sv.state, "STOPPED")
    return {
        "modelName": sv.name,
        "modelVersion": sv.label,
        "modelUrl": sv.name,
        "runtime": m.format if m is not None else "",
        "minWorkers": instances,
        "maxWorkers": instances,
        "batchSize": serving.batching.max_batch_size if serving is not None else 1,
        "maxBatchDelay": serving.batching.max_queue_delay_ms if serving is not None else 0,
        "loadedAtStartup": True,
        "status": str(sv.state),
        "reason": sv.reason,
        "workers": [{"id": str(i), "status": worker} for i in range(instances)],
    }
