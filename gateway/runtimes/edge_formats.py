"""Runtimes for the edge-only formats: ExecuTorch ``.pte`` and lite TorchScript ``.ptl``.

The gateway does not serve these formats; the model store runs them once when they are
registered and the converters run them to verify parity, with the same interface as every
served runtime. Both run on the CPU only, as they would on a device.
"""

from __future__ import annotations

from typing import Any

import torch

from gateway.runtimes.base import Arrays, Runtime
from gateway.runtimes.common import bad_artifact, bad_inputs, parse_device
from gateway.runtimes.torch_common import name_outputs, to_tensor
from truce.errors import FailedPrecondition

_CPU = torch.device("cpu")


def _cpu_only(runtime: Runtime) -> None:
    if parse_device(runtime.spec.device).is_cuda:
        raise FailedPrecondition(
            f"{runtime.spec.format} models run on the CPU (as on a device); set device to cpu"
        )


class ExecuTorchRuntime(Runtime):
    """ExecuTorch program, run by its Python bindings (``executorch.runtime``)."""

    formats = ("executorch",)

    def _load(self) -> None:
        _cpu_only(self)
        from executorch.runtime import Runtime as ETRuntime

        try:
            program = ETRuntime.get().load_program(self.spec.artifact)
            self._method: Any = program.load_method("forward")
        except (RuntimeError, ValueError, OSError) as exc:
            raise bad_artifact("ExecuTorch program", exc, "re-export it with executorch") from None

    def _predict(self, inputs: Arrays) -> Arrays:
        args = [to_tensor(a, _CPU) for a in self.ordered_inputs(inputs)]
        try:
            return name_outputs(self, self._method.execute(args))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise bad_inputs(exc) from None

    def _unload(self) -> None:
        self._method = None


class TorchScriptLiteRuntime(Runtime):
    """TorchScript saved for the mobile lite interpreter."""

    formats = ("torchscript_lite",)

    def _load(self) -> None:
        _cpu_only(self)
        from torch.jit.mobile import _load_for_lite_interpreter

        try:
            self._module: Any = _load_for_lite_interpreter(str(self.spec.artifact), "cpu")
        except (RuntimeError, ValueError, OSError) as exc:
            raise bad_artifact(
                "lite TorchScript model", exc, "save it with _save_for_lite_interpreter"
            ) from None

    def _predict(self, inputs: Arrays) -> Arrays:
        args = [to_tensor(a, _CPU) for a in self.ordered_inputs(inputs)]
        try:
            with torch.inference_mode():
                return name_outputs(self, self._module(*args))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise bad_inputs(exc) from None

    def _unload(self) -> None:
        self._module = None
