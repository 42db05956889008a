"""The request queue in front of a model version's instances, with optional dynamic batching.

One ``Batcher`` per served version wraps its N runtime instances explicitly::

    submit(inputs, deadline) ──► bounded FIFO queue ──► one worker task per instance
                                  (full: Unavailable)     gathers compatible requests
                                                          (dynamic batching), runs them in
                                                          one forward pass, hands each
                                                          request exactly its own rows

- ``submit`` is synchronous: a request is queued (or refused at once with ``Unavailable``
  when ``max_queue_size`` requests already wait) before its caller awaits anything, so a
  version being retired never loses a request that was routed to it.
- A request whose future is already done when a worker reaches it — the client went away
  (cancelled) or its deadline passed — is never executed.
- Batching is on when ``max_batch_size`` > 1 and every input and output of the signature has
  a dynamic first dimension. Requests are concatenated only when their inputs agree on names,
  datatypes and every non-batch dimension; others run in their own batch. A batch is sent
  when it reaches ``max_batch_size``, or a preferred size with nothing compatible left in
  the queue, or when its oldest request has waited ``max_queue_delay_ms``.
- A batch that the model refuses (``InvalidArgument``) is re-run one request at a time, so
  only the request at fault gets the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from gateway.deadlines import deadline_exceeded
from gateway.metrics import VersionMetrics
from gateway.runtimes.base import Arrays, Runtime
from model_store.manifest import ServingConfig
from model_store.signature import Signature
from truce.errors import ErrorCode, InvalidArgument, TruceError, Unavailable

log = logging.getLogger(__name__)

_Key = tuple[tuple[str, str, tuple[int, ...]], ...]


class _Item:
    __slots__ = ("deadline", "enqueued", "future", "inputs", "key", "rows")

    def __init__(
        self,
        inputs: Arrays,
        rows: int,
        key: _Key | None,
        future: asyncio.Future[Arrays],
        deadline: float | None,
    ) -> None:
        self.inputs, self.rows, self.key = inputs, rows, key
        self.future, self.deadline = future, deadline
        self.enqueued = time.monotonic()


def batchable(signature: Signature) -> bool:
    """True when every tensor of the signature has a dynamic first (batch) dimension."""
    specs = [*signature.inputs, *signature.outputs]
    return bool(specs) and all(s.shape and s.shape[0] == -1 for s in specs)


class Batcher:
    """The queue and workers of one model version (see the module docstring)."""

    def __init__(
        self,
        ref: str,
        instances: Sequence[Runtime],
        serving: ServingConfig,
        signature: Signature,
        metrics: VersionMetrics | None = None,
    ) -> None:
        self.ref = ref
        self.instances = list(instances)
        batching = serving.batching
        self.max_batch = batching.max_batch_size if batchable(signature) else 1
        if batching.max_batch_size > 1 and self.max_batch == 1:
            log.warning("%s: batching is off: its tensors have no dynamic first dimension", ref)
        self.delay_s = batching.max_queue_delay_ms / 1000.0
        self.preferred = frozenset(batching.preferred_batch_sizes)
        self.max_queue = serving.max_queue_size
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._busy_since: list[float | None] = [None] * len(self.instances)
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start one worker task per instance (call from the event loop)."""
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._worker(i, inst), name=f"truce-worker-{self.ref}-{i}")
            for i, inst in enumerate(self.instances)
        ]

    async def close(self, timeout: float) -> None:
        """Refuse new requests, finish the queued and running ones, then unload."""
        self._closing = True
        self._wake()
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        gone = Unavailable(f"model {self.ref} was unloaded before the request ran; retry")
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(gone)
        for inst in self.instances:
            try:
                await asyncio.wait_for(inst.unload(), timeout=max(timeout, 1.0))
            except Exception:
                log.exception("%s: unloading an instance failed", self.ref)

    # --- requests -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._queue)

    def stuck(self, now: float, limit_s: float) -> bool:
        """True when an instance has been running one batch for longer than ``limit_s``."""
        return any(t is not None and now - t > limit_s for t in self._busy_since)

    def submit(self, inputs: Arrays, deadline: float | None = None) -> asyncio.Future[Arrays]:
        """Queue one request; its future gets exactly its own output rows."""
        if self._closing:
            raise Unavailable(f"model {self.ref} is being unloaded; retry")
        if len(self._queue) >= self.max_queue:
            self._purge()
            if len(self._queue) >= self.max_queue:
                raise Unavailable(
                    f"model {self.ref} is overloaded: {len(self._queue)} requests are already "
                    "waiting (its max_queue_size); retry later"
                )
        rows, key = self._batch_key(inputs)
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(inputs, rows, key, future, deadline))
        if self._metrics is not None:
            self._metrics.queue_depth.set(len(self._queue))
        if self._waiters:
            self._wake()
        return future

    def _batch_key(self, inputs: Arrays) -> tuple[int, _Key | None]:
        if self.max_batch == 1:
            return 1, None
        rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        if len(rows) != 1 or -1 in rows:
            return 1, None  # no common batch dimension: runs alone
        key = tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()))
        return rows.pop(), key

    def _purge(self) -> None:
        self._queue = deque(it for it in self._queue if not it.future.done())

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        handle = loop.call_later(timeout, _resolve, fut) if timeout is not None else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()

    # --- workers ------------------------------------------------------------------------
    def _pop_live(self) -> _Item | None:
        now = time.monotonic()
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():
                continue
            if item.deadline is not None and item.deadline <= now:
                item.future.set_exception(deadline_exceeded())
                continue
            return item
        return None

    async def _worker(self, index: int, instance: Runtime) -> None:
        while True:
            item = self._pop_live()
            if item is None:
                if self._closing:
                    return
                await self._wait(None)
                continue
            batch = [item]
            try:
                if item.key is not None and item.rows < self.max_batch:
                    await self._gather(batch)
                if self._metrics is not None:
                    self._metrics.queue_depth.set(len(self._queue))
                await self._run(index, instance, batch)
            except Exception as exc:  # a bug here must not silently stop the worker
                log.exception("%s: worker %d failed", self.ref, index)
                _fail(batch, exc)

    async def _gather(self, batch: list[_Item]) -> None:
        first = batch[0]
        rows = first.rows
        send_at = first.enqueued + self.delay_s
        while True:
            rows = self._take_compatible(batch, first.key, rows)
            if rows >= self.max_batch or rows in self.preferred or self._closing:
                return
            remaining = send_at - time.monotonic()
            if remaining <= 0:
                return
            await self._wait(remaining)

    def _take_compatible(self, batch: list[_Item], key: _Key | None, rows: int) -> int:
        if not self._queue:
            return rows
        now = time.monotonic()
        keep: deque[_Item] = deque()
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():
                continue
            if item.deadline is not None and item.deadline <= now:
                item.future.set_exception(deadline_exceeded())
            elif item.key == key and rows + item.rows <= self.max_batch:
                batch.append(item)
                rows += item.rows
            else:
                keep.append(item)
        self._queue = keep
        return rows

    async def _run(self, index: int, instance: Runtime, batch: list[_Item]) -> None:
        now = time.monotonic()
        live = [it for it in batch if not it.future.done()]
        if not live:
            return
        m = self._metrics
        if m is not None:
            for it in live:
                m.queue_seconds.observe(now - it.enqueued)
        if len(live) == 1:
            inputs = live[0].inputs
        else:
            inputs = {n: np.concatenate([it.inputs[n] for it in live]) for n in live[0].inputs}
        self._busy_since[index] = now
        try:
            outputs = await instance.infer(inputs)
        except asyncio.CancelledError:
            _fail(live, Unavailable(f"model {self.ref} was unloaded while the request ran"))
            raise
        except InvalidArgument as exc:
            if len(live) == 1:
                _fail(live, exc)
                return
            for it in live:  # find the culprit: run each request alone
                await self._run(index, instance, [it])
            return
        except Exception as exc:
            _fail(live, exc)
            return
        finally:
            self._busy_since[index] = None
            if m is not None:
                m.compute_seconds.observe(time.monotonic() - now)
                m.batch_size.observe(sum(it.rows for it in live))
        if len(live) == 1:
            _deliver(live[0], outputs)
            return
        self._split(live, outputs)

    def _split(self, live: list[_Item], outputs: Arrays) -> None:
        total = sum(it.rows for it in live)
        for name, arr in outputs.items():
            if arr.ndim == 0 or arr.shape[0] != total:
                _fail(
                    live,
                    TruceError(
                        f"model {self.ref} returned {arr.shape[0] if arr.ndim else 0} rows of "
                        f"{name!r} for a batch of {total}; turn batching off for this model",
                        ErrorCode.INTERNAL,
                    ),
                )
                return
        offset = 0
        for it in live:
            end = offset + it.rows
            _deliver(it, {n: a[offset:end] for n, a in outputs.items()})
            offset = end


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _deliver(item: _Item, outputs: Arrays) -> None:
    if not item.future.done():
        item.future.set_result(outputs)


def _fail(items: list[_Item], exc: BaseException) -> None:
    for it in items:
        if not it.future.done():
            it.future.set_exception(exc)
