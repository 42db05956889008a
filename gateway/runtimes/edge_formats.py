"""Runtimes for the edge-only formats: ExecuTorch ``.pte`` and lite TorchScript ``.ptl``.

The gateway does not serve these formats; the model store runs them once when they are
registered and the converters run them to verify parity, with the same interface as every
served runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.runtimes.base import Arrays, Runtime


def _to_numpy(outputs: Any) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.ascontiguousarray(o.detach().cpu().numpy()) for o in outputs]


class ExecuTorchRuntime(Runtime):
    """ExecuTorch program, run by its Python bindings (``executorch.runtime``)."""

    formats = ("executorch",)

    def _load(self) -> None:
        from executorch.runtime import Runtime as ETRuntime

        program = ETRuntime.get().load_program(self.spec.artifact)
        self._method = program.load_method("forward")

    def _predict(self, inputs: Arrays) -> Arrays:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in self.ordered_inputs(inputs)]
        outs = _to_numpy(self._method.execute(args))
        return dict(zip(self.output_names(len(outs)), outs, strict=True))

    def _unload(self) -> None:
        self._method = None


class TorchScriptLiteRuntime(Runtime):
    """TorchScript saved for the mobile lite interpreter."""

    formats = ("torchscript_lite",)

    def _load(self) -> None:
        from torch.jit.mobile import _load_for_lite_interpreter

        self._module = _load_for_lite_interpreter(str(self.spec.artifact), map_location="cpu")

    def _predict(self, inputs: Arrays) -> Arrays:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in self.ordered_inputs(inputs)]
        with torch.inference_mode():
            outs = _to_numpy(self._module(*args))
        return dict(zip(self.output_names(len(outs)), outs, strict=True))

    def _unload(self) -> None:
        self._module = None
