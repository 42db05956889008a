"""The runtime interface: one loaded instance of one model version.

A runtime wraps one framework (TorchScript, torch.export, SavedModel, Keras, ONNX Runtime,
LiteRT, a remote server). Subclasses implement three *blocking* methods::

    _load()                      load the artifact onto the device
    _predict(inputs) -> outputs  one forward pass on numpy arrays, keyed by tensor name
    _unload()                    release it (optional)

and may implement ``_declared_signature()`` to report what the artifact itself declares.

Two ways to drive a runtime:
- blocking (``load_blocking`` / ``predict_blocking``): the model store's registration smoke
  test and the converters' parity check, so that what was verified is what is served;
- async (``load`` / ``infer`` / ``unload``): the gateway. Every call is offloaded to the
  instance's own single worker thread, once, here. One thread per instance also makes
  interpreters that are not thread-safe (LiteRT) safe, and keeps framework thread-locals stable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from model_store.signature import Signature, TensorSpec
from truce.errors import FailedPrecondition

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class RuntimeSpec:
    """What a runtime needs to load a model.

    ``signature`` is ``None`` while a model is being registered and its signature is still
    being discovered; a runtime must then name its outputs ``output__0``, ``output__1``...
    (or by the names the artifact declares).
    """

    artifact: Path
    format: str
    signature: Signature | None = None
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeclaredSignature:
    """What an artifact says about its tensors; either side may be empty when unknown."""

    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)


class Runtime(ABC):
    """One loaded instance of one model version (see the module docstring)."""

    #: the manifest formats this runtime serves
    formats: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: RuntimeSpec) -> None:
        self.spec = spec
        self.loaded = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # --- to implement -------------------------------------------------------------------
    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _predict(self, inputs: Arrays) -> Arrays: ...

    def _unload(self) -> None:
        return None

    def _declared_signature(self) -> DeclaredSignature:
        return DeclaredSignature()

    # --- blocking API -------------------------------------------------------------------
    def load_blocking(self) -> None:
        self._load()
        self.loaded = True

    def predict_blocking(self, inputs: Arrays) -> Arrays:
        if not self.loaded:
            raise FailedPrecondition("model is not loaded")
        return self._predict(inputs)

    def unload_blocking(self) -> None:
        if self.loaded:
            self.loaded = False
            self._unload()

    def declared_signature(self) -> DeclaredSignature:
        """The signature the loaded artifact declares (call after loading)."""
        if not self.loaded:
            raise FailedPrecondition("model is not loaded")
        return self._declared_signature()

    # --- async API (gateway) ------------------------------------------------------------
    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"truce-{self.spec.format}"
            )
        return self._executor

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool(), self.load_blocking)

    async def infer(self, inputs: Arrays) -> Arrays:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool(), self.predict_blocking, inputs
        )

    async def unload(self) -> None:
        pool = self._pool()
        await asyncio.get_running_loop().run_in_executor(pool, self.unload_blocking)
        pool.shutdown(wait=False)
        self._executor = None

    # --- helpers for subclasses ---------------------------------------------------------
    def ordered_inputs(self, inputs: Arrays) -> list[np.ndarray]:
        """Inputs in signature order (positional frameworks)."""
        sig = self.spec.signature
        if sig is None:
            return list(inputs.values())
        return [inputs[t.name] for t in sig.inputs]
