"""TorchScript (``.pt`` from ``torch.jit.trace`` / ``torch.jit.script`` + ``torch.jit.save``).

Loaded with ``torch.jit.load``, which reads TorchScript archives only: a pickled eager
module is refused, never unpickled. TorchScript carries no tensor shapes or dtypes, so the
signature comes from the manifest (``--input`` / ``--output`` at registration).
"""

from __future__ import annotations

from typing import Any

import torch

from gateway.runtimes.base import Arrays, Runtime
from gateway.runtimes.common import bad_artifact
from gateway.runtimes.torch_common import run_module, torch_device


class TorchScriptRuntime(Runtime):
    """Serves a TorchScript module on ``cpu`` / ``cuda`` / ``cuda:N``."""

    formats = ("torchscript",)

    def _load(self) -> None:
        self._device = torch_device(self.spec.device)
        try:
            module = torch.jit.load(str(self.spec.artifact), map_location=self._device)
        except (RuntimeError, ValueError, OSError) as exc:
            raise bad_artifact(
                "TorchScript model",
                exc,
                "save it with torch.jit.save(torch.jit.trace(model, example), 'model.pt'), "
                "or export a .pt2 with torch.export (pickled modules are not accepted)",
            ) from None
        self._module: Any = module.eval()

    def _predict(self, inputs: Arrays) -> Arrays:
        return run_module(self, self._module, self._device, inputs)

    def _unload(self) -> None:
        del self._module
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
