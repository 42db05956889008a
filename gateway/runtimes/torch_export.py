"""``torch.export`` programs (``.pt2`` from ``torch.export.save``).

The program declares its inputs and outputs: names from the graph signature, shapes from
the placeholders' fake tensors (symbolic dimensions such as a dynamic batch become ``-1``).

``torch.export.load`` may unpickle parts of an archive (pickled weights or constants, the
legacy layout, and a fallback to ``weights_only=False``). Loading therefore runs with
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``, which turns every one of those into a restricted,
tensors-only unpickler: an archive that needs real pickles is refused.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.export.passes

from gateway.runtimes.base import Arrays, DeclaredSignature, Runtime
from gateway.runtimes.common import bad_artifact
from gateway.runtimes.torch_common import TORCH_DATATYPES, run_module, torch_device
from model_store.signature import TensorSpec
from truce.errors import InvalidArgument


class TorchExportRuntime(Runtime):
    """Serves an ``ExportedProgram`` on ``cpu`` / ``cuda`` / ``cuda:N``."""

    formats = ("torch_export",)

    def _load(self) -> None:
        self._device = torch_device(self.spec.device)
        try:
            with _weights_only():
                program = torch.export.load(str(self.spec.artifact))
        except pickle.UnpicklingError:
            raise InvalidArgument(
                "the .pt2 archive contains pickled Python objects, which Truce never loads; "
                "export it again with torch.export.save (it stores weights as plain tensors)"
            ) from None
        except Exception as exc:
            raise bad_artifact(
                "torch.export program",
                exc,
                "save it with torch.export.save(torch.export.export(model, args), 'model.pt2') "
                "using the same torch version as the server",
            ) from None
        if self._device.type != "cpu":
            program = torch.export.passes.move_to_device_pass(program, self._device)
        self._program = program
        self._declared = _declared(program)
        self._module: Any = program.module()

    def _predict(self, inputs: Arrays) -> Arrays:
        names = [t.name for t in self._declared.outputs]
        return run_module(self, self._module, self._device, inputs, names)

    def _unload(self) -> None:
        del self._module, self._program
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _declared_signature(self) -> DeclaredSignature:
        return self._declared


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    # The variable is process-wide: one load at a time sets and restores it.
    with _ENV_LOCK:
        previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        try:
            yield
        finally:
            if previous is None:
                del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
            else:
                os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def _declared(program: torch.export.ExportedProgram) -> DeclaredSignature:
    gs = program.graph_signature
    nodes = {n.name: n for n in program.graph.nodes}
    return DeclaredSignature(
        inputs=_specs(nodes, list(gs.user_inputs)),
        outputs=_specs(nodes, [n for n in gs.user_outputs if n is not None]),
    )


def _specs(nodes: dict[str, Any], names: list[str]) -> list[TensorSpec]:
    specs = []
    for name in names:
        node = nodes.get(name)
        val = node.meta.get("val") if node is not None else None
        if not isinstance(val, torch.Tensor) or val.dtype not in TORCH_DATATYPES:
            return []  # a non-tensor or exotic value: leave the signature to the manifest
        shape = [d if isinstance(d, int) else -1 for d in val.shape]
        specs.append(TensorSpec(name=name, datatype=TORCH_DATATYPES[val.dtype], shape=shape))
    return specs
