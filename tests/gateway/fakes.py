"""An in-memory runtime and store helpers for the gateway's plumbing tests.

``FakeRuntime`` computes ``y = 2 * x`` (any shape, FP32) and can be slowed down, blocked,
made to fail, or made to fail loading, through a shared ``Behavior``. ``fake_store`` puts
versions with a real manifest (and a dummy artifact) into a real ``ModelStore``, so the
registry is tested against the store it will really read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.runtimes.base import Arrays, Runtime, RuntimeSpec
from model_store.manifest import BatchingConfig, ServingConfig
from model_store.signature import Signature, TensorSpec
from model_store.store import ModelStore
from truce.errors import InvalidArgument

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 4])
Y = TensorSpec(name="y", datatype="FP32", shape=[-1, 4])
SIGNATURE = Signature(inputs=[X], outputs=[Y])


@dataclass
class Behavior:
    """What every FakeRuntime of a test does; tests change it while the server runs."""

    delay_s: float = 0.0
    #: when set, predictions wait until it is set (a hung or slow model)
    gate: threading.Event | None = None
    #: when given, the gate holds only these models
    gated: set[str] | None = None
    #: (name, version) pairs whose load raises
    fail_load: set[tuple[str, int]] = field(default_factory=set)
    load_delay_s: float = 0.0
    #: a prediction whose x contains this value is refused (InvalidArgument)
    poison: float | None = None
    #: every prediction's (model ref, rows), in order
    calls: list[tuple[str, int]] = field(default_factory=list)
    #: the first element of x of every prediction (tells requests apart)
    firsts: list[float] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeRuntime(Runtime):
    formats = ("onnx",)

    def __init__(self, spec: RuntimeSpec, behavior: Behavior) -> None:
        super().__init__(spec)
        self.behavior = behavior
        version_dir = spec.artifact.parent
        self.ref = f"{version_dir.parent.name}:{version_dir.name}"

    def _load(self) -> None:
        b = self.behavior
        time.sleep(b.load_delay_s)
        name, _, version = self.ref.partition(":")
        if (name, int(version)) in b.fail_load:
            raise RuntimeError("cannot open /secret/store/path/model.onnx: corrupt")
        with b.lock:
            b.loads.append(self.ref)

    def _predict(self, inputs: Arrays) -> Arrays:
        b = self.behavior
        x = inputs["x"]
        with b.lock:
            b.calls.append((self.ref, int(x.shape[0])))
            b.firsts.append(float(x.flat[0]) if x.size else float("nan"))
        if b.gate is not None and (b.gated is None or self.ref.partition(":")[0] in b.gated):
            b.gate.wait(30)
        if b.delay_s:
            time.sleep(b.delay_s)
        if b.poison is not None and bool(np.any(x == b.poison)):
            raise InvalidArgument("the model refused the inputs: poisoned value")
        return {"y": (x * 2).astype(np.float32)}

    def _unload(self) -> None:
        with self.behavior.lock:
            self.behavior.unloads.append(self.ref)


def factory(behavior: Behavior) -> Callable[[RuntimeSpec], Runtime]:
    """A ``runtime_factory`` for the registry that opens FakeRuntimes."""

    def open_fake(spec: RuntimeSpec) -> Runtime:
        return FakeRuntime(spec, behavior)

    return open_fake


def add_fake_version(
    store: ModelStore,
    name: str,
    *,
    max_batch_size: int = 1,
    delay_ms: float = 2.0,
    instances: int = 1,
    max_queue_size: int = 256,
    labels: dict[str, str] | None = None,
    signature: Signature = SIGNATURE,
) -> int:
    """Register a new version of ``name`` (dummy artifact, real manifest); its number."""
    tmp = store.root.parent / f"artifact-{name}.onnx"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"fake onnx model " + name.encode())
    serving = ServingConfig(
        batching=BatchingConfig(max_batch_size=max_batch_size, max_queue_delay_ms=delay_ms),
        instances=instances,
        max_queue_size=max_queue_size,
    )
    manifest = store.add_version(
        name, tmp, format="onnx", signature=signature, serving=serving, labels=labels
    )
    return manifest.version


def fake_store(root: Path, names: tuple[str, ...] = ("double",)) -> ModelStore:
    store = ModelStore(root / "store")
    for name in names:
        add_fake_version(store, name)
    return store
