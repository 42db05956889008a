"""TorchServe handler for the benchmark and the load-test end-to-end test.

Runs inside TorchServe's Python worker (its own virtualenv), not in Truce. Each request body
is a JSON tensor with its batch dimension (``[[...]]``, or ``{"data": [[...]]}``), which
TorchServe has already decoded for ``application/json``; with batching on, the requests of one
batch are concatenated, run in one forward call and split back, each getting its own rows.
The TorchScript model is loaded by ``BaseHandler.initialize`` from the archive.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler


class TensorHandler(BaseHandler):  # type: ignore[misc]  # TorchServe is untyped
    """JSON tensor in, JSON list of output rows out."""

    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        tensors = []
        for row in data:
            body = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(body, bytes | bytearray):
                body = json.loads(body)
            if isinstance(body, dict):
                body = body.get("data")
            tensors.append(torch.as_tensor(body, dtype=torch.float32))
        self._rows = [len(t) for t in tensors]
        return torch.cat(tensors)

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.model(data)
        return out

    def postprocess(self, data: torch.Tensor) -> list[Any]:
        return [part.tolist() for part in torch.split(data, self._rows)]
