"""The registry: (model, version | alias) -> a loaded model, kept in step with the store.

    start()  ─► sync(): read the store ─► for each model: versions chosen by its policy
                                          plus the targets of its aliases
             ─► each new version: verify sha256 ─► open N runtime instances ─► Batcher
             ─► poll store.fingerprint() every reload_interval_s; sync again on change

- A version that fails (checksum, missing extra, load error, load timeout) is FAILED with its
  reason; every other version keeps serving.
- A version no longer wanted is retired: it stops receiving new requests at once, its queued
  and running requests finish, then its instances are unloaded. A version that the policy
  replaced keeps serving until a replacement is READY (a broken new upload never takes a
  model down), unless it was removed from the store.
- An admin ``unload`` holds a model out of service until it is ``load``-ed again; ``load``
  also retries versions that FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import gc_pauses
from gateway.batching import Batcher
from gateway.metrics import Metrics
from gateway.policy import VersionPolicy, policy_for
from gateway.runtimes import Runtime, RuntimeSpec, open_runtime
from gateway.runtimes.common import first_line
from gateway.served import ModelState, ServedModel, ServedVersion, shown
from gateway.settings import Settings
from model_store.manifest import Manifest
from model_store.store import Alias, ModelStore
from truce.errors import FailedPrecondition, NotFound, TruceError

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[RuntimeSpec], Runtime]


@dataclass(frozen=True)
class _Stored:
    versions: list[int]
    aliases: dict[str, Alias]
    policy: VersionPolicy


class Registry:
    """Loaded models by name and version; see the module docstring."""

    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        runtime_factory: RuntimeFactory = open_runtime,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._factory = runtime_factory
        self._models: dict[str, ServedModel] = {}
        self._retiring: dict[tuple[str, int], ServedVersion] = {}
        self._held: set[str] = set()
        self._stored: dict[str, _Stored] = {}
        self._fingerprint: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._load_tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._sync_lock = asyncio.Lock()
        self._load_slots = asyncio.Semaphore(2)
        self._poller: asyncio.Task[None] | None = None
        self.started = False

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Load everything the store holds, then keep polling it (when enabled)."""
        await self.sync(wait=True)
        self.started = True
        if self.settings.reload_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def close(self) -> None:
        """Stop polling, retire every version (in-flight requests finish) and unload."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        async with self._sync_lock:
            for model in list(self._models.values()):
                for sv in list(model.versions.values()):
                    self._retire(model, sv)
            self._models.clear()
        await self._wait_tasks()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                fingerprint = await asyncio.to_thread(self.store.fingerprint)
                if fingerprint != self._fingerprint:
                    await self.sync()
            except Exception:
                log.exception("polling the model store failed; will retry")

    async def sync(self, *, wait: bool = False) -> None:
        """Bring the served versions in step with the store; ``wait`` for the loads."""
        async with self._sync_lock:
            try:
                fingerprint, stored = await asyncio.to_thread(self._read_store)
            except TruceError as exc:
                log.error("cannot read the model store: %s", exc.message)
                return
            self._fingerprint, self._stored = fingerprint, stored
            started = self._apply(stored)
        if wait and started:
            await asyncio.wait(started)

    async def _wait_tasks(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # --- reading the store (worker thread) ----------------------------------------------
    def _read_store(self) -> tuple[str, dict[str, _Stored]]:
        fingerprint = self.store.fingerprint()
        out: dict[str, _Stored] = {}
        for name in self.store.model_names():
            versions = self.store.versions(name)
            if not versions:
                continue
            try:
                aliases = self.store.aliases(name)
            except TruceError as exc:
                log.warning("model %s: %s", name, exc.message)
                aliases = {}
            try:
                labels = self.store.manifest(name, versions[-1]).labels
            except TruceError:
                labels = {}  # that version will fail to load and say why
            s = self.settings
            try:
                policy = policy_for(name, labels, s.version_policies, s.version_policy)
            except TruceError as exc:
                log.warning("model %s: %s; using %s", name, exc.message, s.version_policy)
                policy = policy_for(name, {}, s.version_policies, s.version_policy)
            out[name] = _Stored(versions, aliases, policy)
        return fingerprint, out

    # --- reconciling (event loop, under the sync lock) ----------------------------------
    def _apply(self, stored: dict[str, _Stored]) -> list[asyncio.Task[None]]:
        for name, gone in list(self._models.items()):
            if name not in stored or name in self._held:
                for sv in list(gone.versions.values()):
                    self._retire(gone, sv)
                del self._models[name]
        started: list[asyncio.Task[None]] = []
        for name, st in stored.items():
            if name in self._held:
                continue
            model = self._models.get(name)
            if model is None:
                model = self._models[name] = ServedModel(name)
            model.stored, model.policy, model.aliases = st.versions, st.policy, st.aliases
            targets = {a.version for a in st.aliases.values() if a.version in st.versions}
            model.desired = set(st.policy.select(st.versions)) | targets
            for v in sorted(model.desired - set(model.versions)):
                sv = model.versions[v] = ServedVersion(name, v)
                self.metrics.set_state(name, v, sv.state)
                task = self._spawn(self._load(model, sv))
                self._load_tasks[name, v] = task
                started.append(task)
            self._settle(model)
        return started

    def _settle(self, model: ServedModel) -> None:
        """Retire versions no longer wanted, once that is safe; refresh routing."""
        desired_ready = any(
            model.versions[v].state is ModelState.READY
            for v in model.desired
            if v in model.versions
        )
        stored = set(model.stored)
        for v, sv in list(model.versions.items()):
            if v not in model.desired and (v not in stored or desired_ready or not model.desired):
                self._retire(model, sv)
        model.refresh_routes()

    def _retire(self, model: ServedModel, sv: ServedVersion) -> None:
        model.versions.pop(sv.version, None)
        sv.state = ModelState.UNLOADING
        self.metrics.set_state(sv.name, sv.version, sv.state)
        self._retiring[sv.name, sv.version] = sv
        model.refresh_routes()
        self._spawn(self._unload(sv))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- loading and unloading ----------------------------------------------------------
    async def _load(self, model: ServedModel, sv: ServedVersion) -> None:
        runtimes: list[Runtime] = []
        timeout = self.settings.model_load_timeout_s
        try:
            async with self._load_slots:
                manifest = await asyncio.wait_for(
                    asyncio.to_thread(self.store.verify, sv.name, sv.version), timeout
                )
                sv.manifest = manifest
                spec = self._runtime_spec(manifest)
                for _ in range(manifest.serving.instances):
                    runtimes.append(self._factory(spec))
                    await asyncio.wait_for(runtimes[-1].load(), timeout)
            batcher = Batcher(
                sv.ref,
                runtimes,
                manifest.serving,
                manifest.signature,
                self.metrics.version(sv.name, sv.version),
            )
            batcher.start()
            sv.batcher = batcher
            if sv.state is ModelState.LOADING:
                sv.state = ModelState.READY
                log.info("%s is ready (%s, %d instance(s))", sv.ref, manifest.format, len(runtimes))
            gc_pauses.settle()
        except Exception as exc:
            sv.reason = _reason(exc, timeout)
            if sv.state is ModelState.LOADING:
                sv.state = ModelState.FAILED
            log.warning("%s failed to load: %s", sv.ref, sv.reason, exc_info=log.isEnabledFor(10))
            for rt in runtimes:  # queued behind a load that may still be running
                self._spawn(_quietly(rt.unload()))
        finally:
            self._load_tasks.pop((sv.name, sv.version), None)
            self.metrics.set_state(sv.name, sv.version, sv.state)
            if self._models.get(model.name) is model:
                self._settle(model)

    def _runtime_spec(self, manifest: Manifest) -> RuntimeSpec:
        if not manifest.servable:
            raise FailedPrecondition(
                f"format {manifest.format} is stored for edge devices and is not served"
            )
        if manifest.format == "remote":
            self._check_remote(manifest)
        artifact = self.store.version_dir(manifest.name, manifest.version) / manifest.artifact
        return RuntimeSpec(
            artifact=artifact,
            format=manifest.format,
            signature=manifest.signature,
            device=manifest.serving.device,
            # the remote runtime checks the URL it actually reads (remote.json) as well
            options={"allowed_remote_urls": list(self.settings.allowed_remote_urls)}
            if manifest.format == "remote"
            else {},
        )

    def _check_remote(self, manifest: Manifest) -> None:
        from gateway.runtimes.remote_target import check_allowed

        # same scheme, host and port, path at or below an entry: never a string prefix
        check_allowed(
            str((manifest.remote or {}).get("url", "")), self.settings.allowed_remote_urls
        )

    async def _unload(self, sv: ServedVersion) -> None:
        try:
            loading = self._load_tasks.get((sv.name, sv.version))
            if loading is not None:
                await asyncio.wait([loading])
            if sv.batcher is not None:
                await sv.batcher.close(self.settings.shutdown_grace_s)
                log.info("%s unloaded", sv.ref)
                gc_pauses.reclaim()
        finally:
            self._retiring.pop((sv.name, sv.version), None)
            self.metrics.forget_version(sv.name, sv.version)

    # --- admin --------------------------------------------------------------------------
    async def load_model(self, name: str) -> None:
        """(Re)load a model: serve it again after ``unload``, retry FAILED versions."""
        if not await asyncio.to_thread(self.store.versions, name):
            raise NotFound(f"the store has no model named {shown(name)!r}")
        self._held.discard(name)
        model = self._models.get(name)
        if model is not None:
            for sv in list(model.versions.values()):
                if sv.state is ModelState.FAILED:
                    model.versions.pop(sv.version)
        await self.sync(wait=True)
        now = self._models.get(name)
        failed = [sv for sv in (now.versions.values() if now else ()) if sv.reason]
        if failed:
            raise FailedPrecondition(f"model {failed[0].ref} failed to load: {failed[0].reason}")

    async def unload_model(self, name: str) -> None:
        """Take a model out of service until ``load_model``; waits for in-flight requests."""
        if name not in self._models and name not in self._stored:
            raise NotFound(f"no model named {shown(name)!r} is served")
        self._held.add(name)
        await self.sync()
        pending = [t for t in self._tasks if not t.done()]
        while any(key[0] == name for key in self._retiring) and pending:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending = [t for t in self._tasks if not t.done()]

    # --- queries (hot path: no I/O) -----------------------------------------------------
    def resolve(self, name: str, version: str | None) -> ServedVersion:
        """The READY version a request goes to; NotFound/InvalidArgument/Unavailable else."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"unknown model {shown(name)!r}")
        sv = model.default() if not version else model.lookup(version)
        return sv.check_ready()

    def lookup(self, name: str, version: str | None) -> ServedVersion:
        """The version a request names, in any state (readiness and metadata)."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"unknown model {shown(name)!r}")
        return model.newest() if not version else model.lookup(version)

    def model(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def served_versions(self, name: str) -> list[str]:
        model = self._models.get(name)
        if model is None:
            return []
        return [sv.label for _, sv in sorted(model.versions.items()) if sv.state == "READY"]

    def index(self) -> list[dict[str, str]]:
        """Every stored model version with its state (the repository extension's index)."""
        rows: list[dict[str, str]] = []
        for name in sorted(set(self._stored) | set(self._models)):
            model = self._models.get(name)
            st = self._stored.get(name)
            versions = sorted(set(st.versions if st else []) | set(model.versions if model else []))
            for v in versions:
                sv = model.versions.get(v) if model else None
                sv = sv or self._retiring.get((name, v))
                if sv is not None:
                    rows.append(_row(name, v, sv.state, sv.reason))
                elif name in self._held:
                    rows.append(_row(name, v, "UNAVAILABLE", "unloaded"))
                else:
                    policy = st.policy if st else "latest"
                    rows.append(_row(name, v, "UNAVAILABLE", f"not selected by policy {policy}"))
        return rows

    def stuck(self, sv: ServedVersion) -> bool:
        """True when one of its instances is hung past the longest request deadline."""
        b = sv.batcher
        return b is not None and b.stuck(time.monotonic(), self.settings.max_request_timeout_s)


def _row(name: str, version: int, state: str, reason: str) -> dict[str, str]:
    return {"name": name, "version": str(version), "state": str(state), "reason": reason}


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TruceError):
        return exc.message
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"it did not load within {timeout:g} s (model_load_timeout_s)"
    return first_line(exc)


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        log.debug("cleanup failed", exc_info=True)
