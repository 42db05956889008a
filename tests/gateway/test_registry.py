"""The registry against a real ModelStore with fake runtimes: policies, aliases, hot reload,
failed loads, draining and the admin operations."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.registry import Registry
from gateway.served import ModelState
from gateway.settings import Settings
from model_store.store import ModelStore
from tests.gateway.fakes import Behavior, add_fake_version, factory
from truce.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

MakeRegistry = Callable[..., Registry]


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
async def make(store: ModelStore) -> AsyncIterator[MakeRegistry]:
    made: list[Registry] = []

    def build(behavior: Behavior | None = None, **settings: Any) -> Registry:
        settings.setdefault("reload_interval_s", 0)
        s = Settings(store=store.root, **settings)
        reg = Registry(store, s, runtime_factory=factory(behavior or Behavior()))
        made.append(reg)
        return reg

    yield build
    for reg in made:
        await reg.close()


def states(reg: Registry) -> dict[str, str]:
    return {f"{r['name']}:{r['version']}": r["state"] for r in reg.index()}


async def test_serves_the_latest_version_of_every_model(
    store: ModelStore, make: MakeRegistry
) -> None:
    add_fake_version(store, "a")
    add_fake_version(store, "a")
    add_fake_version(store, "b")
    reg = make()
    await reg.start()
    assert reg.resolve("a", None).version == 2
    assert reg.resolve("a", "latest").version == 2
    assert reg.resolve("b", None).version == 1
    assert states(reg) == {"a:1": "UNAVAILABLE", "a:2": "READY", "b:1": "READY"}
    with pytest.raises(NotFound, match="stored but not served"):
        reg.resolve("a", "1")


@pytest.mark.parametrize(
    ("policy", "served"),
    [("latest:2", [2, 3]), ("all", [1, 2, 3]), ("versions:1,3", [1, 3]), ("latest", [3])],
)
async def test_version_policies(
    store: ModelStore, make: MakeRegistry, policy: str, served: list[int]
) -> None:
    for _ in range(3):
        add_fake_version(store, "m")
    reg = make(version_policies={"m": policy})
    await reg.start()
    assert reg.served_versions("m") == [str(v) for v in served]


async def test_policy_from_the_newest_versions_label(store: ModelStore, make: MakeRegistry) -> None:
    add_fake_version(store, "m")
    add_fake_version(store, "m", labels={"truce.version_policy": "all"})
    reg = make()
    await reg.start()
    assert reg.served_versions("m") == ["1", "2"]


async def test_aliases_are_served_and_split_traffic(store: ModelStore, make: MakeRegistry) -> None:
    for _ in range(3):
        add_fake_version(store, "m")
    store.set_alias("m", "stable", 1)
    reg = make()
    await reg.start()
    assert reg.served_versions("m") == ["1", "3"]  # latest plus the alias target
    assert reg.resolve("m", "stable").version == 1
    assert reg.resolve("m", None).version == 3  # no weights: unversioned goes to latest
    store.set_alias("m", "stable", 1, weight=1)
    store.set_alias("m", "canary", 3, weight=1)
    await reg.sync(wait=True)
    picks = collections.Counter(reg.resolve("m", None).version for _ in range(400))
    assert set(picks) == {1, 3}
    with pytest.raises(NotFound, match="no alias"):
        reg.resolve("m", "beta")


@pytest.mark.parametrize(
    ("version", "error"),
    [("7", NotFound), ("0", InvalidArgument), ("bad!", InvalidArgument), ("-1", InvalidArgument)],
)
async def test_bad_versions(
    store: ModelStore, make: MakeRegistry, version: str, error: type[Exception]
) -> None:
    add_fake_version(store, "m")
    reg = make()
    await reg.start()
    with pytest.raises(error):
        reg.resolve("m", version)
    with pytest.raises(NotFound, match="unknown model"):
        reg.resolve("../etc", None)


async def test_hot_reload_new_version_replaces_old(store: ModelStore, make: MakeRegistry) -> None:
    behavior = Behavior()
    add_fake_version(store, "m")
    reg = make(behavior, reload_interval_s=0.02)
    await reg.start()
    add_fake_version(store, "m")
    for _ in range(500):
        if reg.served_versions("m") == ["2"] and "m:1" in behavior.unloads:
            break
        await asyncio.sleep(0.01)
    assert reg.served_versions("m") == ["2"]
    assert reg.resolve("m", None).version == 2
    assert behavior.unloads == ["m:1"]


async def test_broken_new_version_keeps_the_old_one_serving(
    store: ModelStore, make: MakeRegistry
) -> None:
    behavior = Behavior(fail_load={("m", 2)})
    add_fake_version(store, "m")
    add_fake_version(store, "other")
    reg = make(behavior)
    await reg.start()
    add_fake_version(store, "m")
    await reg.sync(wait=True)
    assert states(reg) == {"m:1": "READY", "m:2": "FAILED", "other:1": "READY"}
    assert reg.resolve("m", None).version == 1
    with pytest.raises(FailedPrecondition, match="failed to load") as err:
        reg.resolve("m", "2")
    assert "/secret" not in str(err.value) and "corrupt" in str(err.value)
    assert reg.resolve("other", None).version == 1


async def test_checksum_mismatch_fails_the_load(store: ModelStore, make: MakeRegistry) -> None:
    add_fake_version(store, "m")
    add_fake_version(store, "ok")
    (store.version_dir("m", 1) / "model.onnx").write_bytes(b"tampered")
    reg = make()
    await reg.start()
    row = next(r for r in reg.index() if r["name"] == "m")
    assert row["state"] == "FAILED" and "integrity" in row["reason"]
    assert reg.resolve("ok", None).version == 1


async def test_load_timeout_fails_the_version(store: ModelStore, make: MakeRegistry) -> None:
    add_fake_version(store, "m")
    reg = make(Behavior(load_delay_s=0.5), model_load_timeout_s=0.05)
    await reg.start()
    row = reg.index()[0]
    assert row["state"] == "FAILED" and "did not load within" in row["reason"]


async def test_removed_version_drains_before_unloading(
    store: ModelStore, make: MakeRegistry
) -> None:
    gate = threading.Event()
    behavior = Behavior(gate=gate)
    add_fake_version(store, "m")
    add_fake_version(store, "m")
    reg = make(behavior, version_policy="all")
    await reg.start()
    sv = reg.resolve("m", "1")
    assert sv.batcher is not None
    running = sv.batcher.submit({"x": np.ones((1, 4), np.float32)})
    await asyncio.sleep(0.05)
    store.remove("m", 1)
    await reg.sync()
    assert sv.state is ModelState.UNLOADING
    with pytest.raises(NotFound):
        reg.resolve("m", "1")
    assert "m:1" not in behavior.unloads  # still running its request
    gate.set()
    out = await running
    assert out["y"].shape == (1, 4)
    for _ in range(300):
        if "m:1" in behavior.unloads:
            break
        await asyncio.sleep(0.01)
    assert behavior.unloads == ["m:1"]


async def test_admin_unload_and_load(store: ModelStore, make: MakeRegistry) -> None:
    behavior = Behavior(fail_load={("m", 1)})
    add_fake_version(store, "m")
    reg = make(behavior)
    await reg.start()
    assert states(reg) == {"m:1": "FAILED"}
    behavior.fail_load.clear()
    await reg.load_model("m")  # retries the FAILED version
    assert states(reg) == {"m:1": "READY"}
    await reg.unload_model("m")
    assert states(reg) == {"m:1": "UNAVAILABLE"}
    assert behavior.unloads == ["m:1"]
    with pytest.raises(NotFound):
        reg.resolve("m", None)
    await reg.sync(wait=True)  # a poll does not bring it back
    assert states(reg) == {"m:1": "UNAVAILABLE"}
    await reg.load_model("m")
    assert reg.resolve("m", None).version == 1
    with pytest.raises(NotFound):
        await reg.load_model("nope")
    behavior.fail_load.add(("m", 2))
    add_fake_version(store, "m")
    with pytest.raises(FailedPrecondition, match="m:2 failed to load"):
        await reg.load_model("m")


async def test_loading_version_is_unavailable(store: ModelStore, make: MakeRegistry) -> None:
    add_fake_version(store, "m")
    reg = make(Behavior(load_delay_s=0.3))
    task = asyncio.get_running_loop().create_task(reg.start())
    for _ in range(200):
        if reg.index():
            break
        await asyncio.sleep(0.01)
    with pytest.raises(Unavailable, match="loading"):
        reg.resolve("m", "1")
    assert not reg.started
    await task
    assert reg.started and reg.resolve("m", "1").version == 1
