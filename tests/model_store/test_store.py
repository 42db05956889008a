"""The store on disk: atomic versions, aliases, integrity, names (no frameworks needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_store import store as store_module
from model_store.signature import Signature, TensorSpec
from model_store.store import ModelStore, open_store
from truce.errors import FailedPrecondition, IntegrityError, InvalidArgument, NotFound

SIG = Signature(
    inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4])],
    outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 2])],
)


def _artifact(tmp_path: Path, content: bytes = b"onnx-bytes") -> Path:
    p = tmp_path / "src.onnx"
    p.write_bytes(content)
    return p


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".lock" not in p.name)


def test_versions_are_sequential_and_immutable(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    m1 = store.add_version("mlp", _artifact(tmp_path, b"a"), format="onnx", signature=SIG)
    m2 = store.add_version("mlp", _artifact(tmp_path, b"b"), format="onnx", signature=SIG)
    assert (m1.version, m2.version) == (1, 2)
    assert store.versions("mlp") == [1, 2]
    assert store.model_names() == ["mlp"]
    assert store.resolve("mlp") == 2
    assert store.resolve("mlp", "latest") == 2
    assert store.resolve("mlp", "1") == 1
    assert (store.version_dir("mlp", 1) / "model.onnx").read_bytes() == b"a"
    loaded = store.verify("mlp", 1)
    assert loaded.files[0].path == "model.onnx"
    assert loaded.signature == SIG
    assert loaded.framework == "onnx"


def test_manifest_round_trips_as_json(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    m = store.add_version(
        "m", _artifact(tmp_path), format="onnx", signature=SIG, labels={"team": "vision"}
    )
    raw = json.loads((store.version_dir("m", 1) / "manifest.json").read_text())
    assert raw["schema_version"] == 1
    assert raw["signature"]["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
    assert raw["labels"] == {"team": "vision"}
    assert raw["lineage"]["parity"] is None
    assert store.manifest("m", 1) == m


@pytest.mark.parametrize("change", ["modify", "delete", "add"])
def test_tampered_artifact_is_refused_on_load(tmp_path: Path, change: str) -> None:
    store = ModelStore(tmp_path)
    store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    vdir = store.version_dir("m", 1)
    if change == "modify":
        (vdir / "model.onnx").write_bytes(b"evil-bytes")  # same size, other content
    elif change == "delete":
        (vdir / "model.onnx").unlink()
    else:
        (vdir / "extra.py").write_text("import os")
    with pytest.raises(IntegrityError, match="integrity check"):
        store.verify("m", 1)


def test_failed_write_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path / "s")
    store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    before = _tree(store.root)

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "write_atomic", boom)
    with pytest.raises(OSError):
        store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    assert store.versions("m") == [1]
    assert _tree(store.root) == before


_SLOW_WRITER = """
import sys, time
from pathlib import Path
from model_store import files, store as s
from model_store.signature import Signature, TensorSpec
real = files.copy_artifact
def slow(src, dst):
    real(src, dst)
    print("copied", flush=True)
    time.sleep(60)
s.copy_artifact = slow
sig = Signature(inputs=[TensorSpec(name="x", datatype="FP32", shape=[1])], outputs=[])
s.ModelStore(Path(sys.argv[1])).add_version("m", Path(sys.argv[2]), format="onnx", signature=sig)
"""


def test_killed_registration_leaves_no_version(tmp_path: Path) -> None:
    root = tmp_path / "store"
    src = _artifact(tmp_path, os.urandom(1 << 20))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(root), str(src)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "copied"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = ModelStore(root)
    assert store.versions("m") == []
    assert store.model_names() == []
    # the next registration works and gets version 1
    assert store.add_version("m", src, format="onnx", signature=SIG).version == 1


def test_aliases_and_weights(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for _ in range(3):
        store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    store.set_alias("m", "stable", 2)
    store.set_alias("m", "canary", 3, weight=0.1)
    assert store.resolve("m", "stable") == 2
    assert store.aliases("m")["canary"].weight == 0.1
    with pytest.raises(NotFound):
        store.set_alias("m", "x", 9)
    with pytest.raises(InvalidArgument):
        store.set_alias("m", "latest", 1)
    with pytest.raises(InvalidArgument):
        store.set_alias("m", "12", 1)
    with pytest.raises(NotFound, match="no alias"):
        store.resolve("m", "nightly")
    store.remove_alias("m", "canary")
    assert set(store.aliases("m")) == {"stable"}


def test_remove_version_and_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for _ in range(3):
        store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    store.set_alias("m", "stable", 2)
    with pytest.raises(FailedPrecondition, match="aliased as stable"):
        store.remove("m", 2)
    assert store.remove("m", 3) == [3]
    assert store.versions("m") == [1, 2]
    # versions are never reused while the model has any: the next one is 3 again only
    # because 3 is gone; existing numbers keep their content
    assert store.remove("m") == [1, 2]
    assert store.model_names() == []
    with pytest.raises(NotFound):
        store.remove("m")


def test_fingerprint_changes_with_versions_and_aliases(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    f0 = store.fingerprint()
    store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    f1 = store.fingerprint()
    time.sleep(0.01)
    store.set_alias("m", "stable", 1)
    f2 = store.fingerprint()
    assert len({f0, f1, f2}) == 3
    assert store.fingerprint() == f2


@pytest.mark.parametrize(
    "name",
    ["../evil", "..", "a/b", "/abs", "a\0b", "%2e%2e", "x" * 65, "", ".hidden", "a..b", "a b"],
)
def test_bad_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    root = tmp_path / "store"
    store = ModelStore(root)
    with pytest.raises(InvalidArgument, match="invalid model name"):
        store.add_version(name, _artifact(tmp_path), format="onnx", signature=SIG)
    assert not root.exists() or _tree(root) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.onnx"]


def test_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUCE_STORE", str(tmp_path / "env"))
    assert open_store(str(tmp_path / "arg")).root == tmp_path / "arg"
    assert open_store(None).root == tmp_path / "env"
    monkeypatch.delenv("TRUCE_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert open_store(None).root == tmp_path / "xdg" / "truce" / "store"


def test_damaged_manifest_is_reported(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    (store.version_dir("m", 1) / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="damaged"):
        store.manifest("m", 1)


def test_foreign_folders_in_the_store_are_skipped(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.add_version("m", _artifact(tmp_path), format="onnx", signature=SIG)
    # a store on its own filesystem has lost+found; people drop other folders in too
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "my notes").mkdir()
    before = store.fingerprint()
    assert store.model_names() == ["m"]
    (tmp_path / "other stuff").mkdir()
    assert store.fingerprint() == before
