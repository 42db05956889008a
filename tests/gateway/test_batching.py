"""The batcher with a fake runtime: own rows back, limits, cancellation, deadlines, draining."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.batching import Batcher, batchable
from gateway.metrics import Metrics
from gateway.runtimes.base import RuntimeSpec
from model_store.manifest import BatchingConfig, ServingConfig
from model_store.signature import Signature, TensorSpec
from tests.gateway.fakes import SIGNATURE, Behavior, FakeRuntime
from truce.errors import ErrorCode, InvalidArgument, TruceError, Unavailable


def make(
    behavior: Behavior,
    *,
    max_batch: int = 1,
    delay_ms: float = 5.0,
    instances: int = 1,
    queue: int = 64,
    preferred: list[int] | None = None,
    signature: Signature = SIGNATURE,
) -> Batcher:
    spec = RuntimeSpec(artifact=Path("/store/m/1/model.onnx"), format="onnx")
    runtimes = []
    for _ in range(instances):
        rt = FakeRuntime(spec, behavior)
        rt.load_blocking()
        runtimes.append(rt)
    serving = ServingConfig(
        batching=BatchingConfig(
            max_batch_size=max_batch,
            max_queue_delay_ms=delay_ms,
            preferred_batch_sizes=preferred or [],
        ),
        instances=instances,
        max_queue_size=queue,
    )
    b = Batcher("m:1", runtimes, serving, signature, Metrics().version("m", 1))
    b.start()
    return b


def x(rows: int, value: float, width: int = 4) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, width), value, dtype=np.float32)}


async def test_each_request_gets_exactly_its_own_rows() -> None:
    behavior = Behavior()
    b = make(behavior, max_batch=16, delay_ms=20)
    futures = [b.submit(x(rows, float(i))) for i, rows in enumerate([1, 3, 2, 5, 1, 4])]
    results = await asyncio.gather(*futures)
    for i, (rows, out) in enumerate(zip([1, 3, 2, 5, 1, 4], results, strict=True)):
        assert out["y"].shape == (rows, 4)
        np.testing.assert_array_equal(out["y"], np.full((rows, 4), 2.0 * i, np.float32))
    assert sum(r for _, r in behavior.calls) == 16
    assert len(behavior.calls) < 6, "requests queued together must run as a batch"
    await b.close(5)


async def test_batches_never_exceed_max_batch_size() -> None:
    behavior = Behavior(delay_s=0.005)
    b = make(behavior, max_batch=4, delay_ms=50)
    results = await asyncio.gather(*(b.submit(x(1, float(i))) for i in range(10)))
    assert [float(r["y"][0, 0]) for r in results] == [2.0 * i for i in range(10)]
    assert max(rows for _, rows in behavior.calls) <= 4
    await b.close(5)


async def test_incompatible_shapes_run_separately() -> None:
    behavior = Behavior()
    b = make(behavior, max_batch=16, delay_ms=20)
    sig_wide = await asyncio.gather(b.submit(x(2, 1.0, width=4)), b.submit(x(2, 3.0, width=6)))
    assert sig_wide[0]["y"].shape == (2, 4) and sig_wide[1]["y"].shape == (2, 6)
    assert sorted(rows for _, rows in behavior.calls) == [2, 2]
    await b.close(5)


async def test_preferred_size_is_sent_without_waiting_the_delay() -> None:
    behavior = Behavior()
    b = make(behavior, max_batch=64, delay_ms=10_000, preferred=[2])
    both = asyncio.gather(b.submit(x(1, 1.0)), b.submit(x(1, 2.0)))
    await asyncio.wait_for(both, 5)  # not the 10 s delay (a guard, not a measurement)
    assert [rows for _, rows in behavior.calls] == [2]
    await b.close(5)


def test_batching_needs_a_dynamic_first_dimension() -> None:
    fixed = Signature(
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[1, 4])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[1, 4])],
    )
    assert batchable(SIGNATURE) and not batchable(fixed)


async def test_fixed_shape_models_are_never_batched() -> None:
    fixed = Signature(
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[1, 4])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[1, 4])],
    )
    behavior = Behavior()
    b = make(behavior, max_batch=8, signature=fixed)
    assert b.max_batch == 1
    await asyncio.gather(*(b.submit(x(1, 1.0)) for _ in range(3)))
    assert [rows for _, rows in behavior.calls] == [1, 1, 1]
    await b.close(5)


async def test_queue_full_is_refused_at_once() -> None:
    gate = threading.Event()
    behavior = Behavior(gate=gate)
    b = make(behavior, queue=2)
    running = b.submit(x(1, 0.0))
    await asyncio.sleep(0.05)  # the worker takes it: the queue is empty again
    queued = [b.submit(x(1, 1.0)), b.submit(x(1, 2.0))]
    with pytest.raises(Unavailable, match="overloaded"):
        b.submit(x(1, 3.0))
    gate.set()
    await asyncio.gather(running, *queued)
    await b.close(5)


async def test_cancelled_and_expired_requests_never_run() -> None:
    gate = threading.Event()
    behavior = Behavior(gate=gate)
    b = make(behavior)
    first = b.submit(x(1, 1.0))
    await asyncio.sleep(0.05)
    cancelled = b.submit(x(1, 99.0))
    expired = b.submit(x(1, 77.0), deadline=time.monotonic() + 0.01)
    last = b.submit(x(1, 3.0))
    cancelled.cancel()
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, last)
    with pytest.raises(TruceError) as err:
        await expired
    assert err.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert [rows for _, rows in behavior.calls] == [1, 1]
    await b.close(5)


async def test_a_refused_batch_is_retried_per_request() -> None:
    behavior = Behavior(poison=-1.0)
    b = make(behavior, max_batch=8, delay_ms=20)
    good, bad, good2 = b.submit(x(1, 1.0)), b.submit(x(1, -1.0)), b.submit(x(2, 2.0))
    results = await asyncio.gather(good, bad, good2, return_exceptions=True)
    assert isinstance(results[1], InvalidArgument)
    assert isinstance(results[0], dict) and isinstance(results[2], dict)
    np.testing.assert_array_equal(results[2]["y"], np.full((2, 4), 4.0, np.float32))
    await b.close(5)


async def test_instances_run_in_parallel() -> None:
    gate = threading.Event()
    behavior = Behavior(gate=gate)
    b = make(behavior, instances=2)
    futures = [b.submit(x(1, 1.0)), b.submit(x(1, 2.0)), b.submit(x(1, 3.0))]
    for _ in range(200):  # both instances pick one up while the gate is closed
        if len(behavior.calls) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(behavior.calls) == 2 and b.depth == 1
    gate.set()
    await asyncio.gather(*futures)
    await b.close(5)


async def test_close_finishes_queued_requests_then_unloads() -> None:
    behavior = Behavior(delay_s=0.02)
    b = make(behavior)
    futures = [b.submit(x(1, float(i))) for i in range(5)]
    await b.close(10)
    assert all(f.done() and not f.exception() for f in futures)
    assert behavior.unloads == ["m:1"]
    with pytest.raises(Unavailable, match="being unloaded"):
        b.submit(x(1, 1.0))


async def test_stuck_instance_is_reported() -> None:
    gate = threading.Event()
    b = make(Behavior(gate=gate))
    fut = b.submit(x(1, 1.0))
    await asyncio.sleep(0.05)
    assert b.stuck(time.monotonic(), 0.01)
    assert not b.stuck(time.monotonic(), 60)
    gate.set()
    await fut
    assert not b.stuck(time.monotonic(), 0.01)
    await b.close(5)
