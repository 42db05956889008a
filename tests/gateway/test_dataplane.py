"""The DataPlane over a real registry with fake runtimes: validation before the model runs,
requested outputs, deadlines, draining, metrics and internal errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.dataplane import DataPlane
from gateway.deadlines import deadline_after
from gateway.registry import Registry
from gateway.settings import Settings
from gateway.types import InferRequest
from model_store.signature import Signature, TensorSpec
from model_store.store import ModelStore
from tests.gateway.fakes import Behavior, add_fake_version, factory
from truce.errors import ErrorCode, InvalidArgument, NotFound, TruceError, Unavailable

TWO_OUT = Signature(
    inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4])],
    outputs=[
        TensorSpec(name="y", datatype="FP32", shape=[-1, 4]),
        TensorSpec(name="z", datatype="FP32", shape=[-1, 4]),
    ],
)


@pytest.fixture
def behavior() -> Behavior:
    return Behavior()


@pytest.fixture
async def dp(tmp_path: Path, behavior: Behavior) -> AsyncIterator[DataPlane]:
    store = ModelStore(tmp_path / "store")
    add_fake_version(store, "double")
    add_fake_version(store, "two", signature=TWO_OUT)
    settings = Settings(store=store.root, reload_interval_s=0, request_timeout_s=5)
    registry = Registry(store, settings, runtime_factory=factory(behavior))
    await registry.start()
    yield DataPlane(registry, settings)
    await registry.close()


def req(x: np.ndarray | None = None, **kw: object) -> InferRequest:
    inputs = {"x": np.ones((2, 4), np.float32) if x is None else x}
    return InferRequest(inputs=inputs, **kw)  # type: ignore[arg-type]


async def test_infer_and_metadata(dp: DataPlane) -> None:
    resp = await dp.infer("double", None, req(id="abc"))
    assert resp.model_name == "double" and resp.model_version == "1" and resp.id == "abc"
    np.testing.assert_array_equal(resp.outputs["y"], np.full((2, 4), 2.0, np.float32))
    assert [s.name for s in resp.output_specs] == ["y"]
    meta = dp.model_metadata("double", "1")
    assert meta.versions == ["1"] and meta.platform == "onnxruntime_onnx"
    assert dp.model_ready("double") and dp.ready() and dp.live()
    assert "model_repository" in dp.server_metadata().extensions


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.ones((2, 4), np.float64)}, "datatype FP64, expected FP32"),
        ({"x": np.ones((2, 5), np.float32)}, "shape [2, 5], expected [-1, 4]"),
        ({}, "missing input 'x'"),
        ({"x": np.ones((1, 4), np.float32), "w": np.ones(1, np.float32)}, "unexpected input 'w'"),
    ],
)
async def test_bad_inputs_fail_before_the_model_runs(
    dp: DataPlane, behavior: Behavior, inputs: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        await dp.infer("double", None, InferRequest(inputs=inputs))
    assert behavior.calls == []


async def test_requested_outputs(dp: DataPlane, behavior: Behavior) -> None:
    behavior_y = await dp.infer("double", None, req(requested_outputs=["y"]))
    assert list(behavior_y.outputs) == ["y"]
    with pytest.raises(InvalidArgument, match="no output 'nope'"):
        await dp.infer("double", None, req(requested_outputs=["nope"]))
    # the fake returns only y: a declared output the model did not produce is INTERNAL
    with pytest.raises(TruceError) as err:
        await dp.infer("two", None, req())
    assert err.value.code is ErrorCode.INTERNAL and "did not return its output 'z'" in str(
        err.value
    )


async def test_deadlines(
    dp: DataPlane, behavior: Behavior, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TruceError) as err:
        await dp.infer("double", None, req(deadline=time.monotonic() - 1))
    assert err.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert behavior.calls == []
    gate = threading.Event()
    behavior.gate = gate
    slow = asyncio.ensure_future(dp.infer("double", None, req(deadline=time.monotonic() + 5)))
    await asyncio.sleep(0.05)
    queued = dp.infer("double", None, req(deadline=time.monotonic() + 0.05))
    with pytest.raises(TruceError) as err:
        await queued
    assert err.value.code is ErrorCode.DEADLINE_EXCEEDED
    gate.set()
    await slow
    await asyncio.sleep(0.05)
    assert len(behavior.calls) == 1, "the expired request must never run"


def test_deadline_after_caps_the_client() -> None:
    s = Settings(request_timeout_s=10, max_request_timeout_s=20)
    assert deadline_after(s, None, 100.0) == 110.0
    assert deadline_after(s, 5, 100.0) == 105.0
    assert deadline_after(s, 500, 100.0) == 120.0


async def test_cancelled_request_never_runs(dp: DataPlane, behavior: Behavior) -> None:
    gate = threading.Event()
    behavior.gate = gate
    first = asyncio.ensure_future(dp.infer("double", None, req()))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(dp.infer("double", None, req()))
    await asyncio.sleep(0.01)
    second.cancel()  # what the HTTP app does when the client disconnects
    await asyncio.sleep(0.01)
    gate.set()
    await first
    await asyncio.sleep(0.05)
    assert len(behavior.calls) == 1


async def test_draining_refuses_new_requests_and_waits(dp: DataPlane, behavior: Behavior) -> None:
    gate = threading.Event()
    behavior.gate = gate
    inflight = asyncio.ensure_future(dp.infer("double", None, req()))
    await asyncio.sleep(0.05)
    dp.begin_drain()
    assert not dp.ready()
    with pytest.raises(Unavailable, match="shutting down"):
        await dp.infer("double", None, req())
    assert not await dp.wait_idle(0.05)
    gate.set()
    assert await dp.wait_idle(5)
    assert (await inflight).outputs["y"].shape == (2, 4)


async def test_unexpected_failures_are_internal_and_say_nothing(
    dp: DataPlane, behavior: Behavior
) -> None:
    behavior.poison = 0.0  # InvalidArgument from the model: passed through as 400
    with pytest.raises(InvalidArgument, match="poisoned"):
        await dp.infer("double", None, req(np.zeros((1, 4), np.float32)))
    behavior.poison = None

    def explode(inputs: object) -> object:
        raise RuntimeError("/secret/path/model.onnx exploded")

    sv = dp.registry.resolve("double", None)
    assert sv.batcher is not None
    sv.batcher.instances[0]._predict = explode  # type: ignore[method-assign,assignment]
    with pytest.raises(TruceError) as err:
        await dp.infer("double", None, req())
    assert err.value.code is ErrorCode.INTERNAL and "/secret" not in str(err.value)


async def test_metrics_count_every_outcome(dp: DataPlane) -> None:
    await dp.infer("double", None, req())
    with pytest.raises(NotFound):
        await dp.infer("nope", None, req())
    with pytest.raises(InvalidArgument):
        await dp.infer("double", None, InferRequest(inputs={}))
    text = dp.metrics.render()[0].decode()
    assert 'truce_requests_total{code="OK",model="double",protocol="rest",version="1"} 1.0' in text
    assert 'code="NOT_FOUND",model="",protocol="rest",version=""} 1.0' in text
    assert 'code="INVALID_ARGUMENT",model="double"' in text
    assert 'truce_model_state{model="double",state="READY",version="1"} 1.0' in text
    assert "truce_batch_size_bucket" in text and "truce_queue_duration_seconds" in text
