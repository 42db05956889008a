"""Shared test fixtures.

``model_files``: every tiny model of ``truce.zoo`` in every format, built once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# --- the tiny model zoo ------------------------------------------------------------------
#: packages the zoo needs to write every format; their versions also key the cache
_ZOO_PACKAGES = ("torch", "tensorflow-cpu", "keras", "onnx", "onnxruntime", "executorch")


def _zoo_cache_key() -> str:
    h = hashlib.sha256((REPO / "truce" / "zoo.py").read_bytes())
    for dist in _ZOO_PACKAGES:
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)};".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}=none;".encode())
    return h.hexdigest()[:16]


def _build_zoo(target: Path) -> None:
    """Run ``python -m truce.zoo`` in a child process (TF and ExecuTorch stay out of ours)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "truce.zoo", str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the model zoo failed:\n{proc.stderr[-4000:]}", pytrace=False)


def _cached_zoo(cache_root: Path) -> Path:
    """The zoo for this zoo.py and these framework versions, built at most once per machine.

    Built in a temporary sibling and renamed into place, so concurrent sessions never see
    a half-written set.
    """
    final = cache_root / f"zoo-{_zoo_cache_key()}"
    if (final / ".complete").exists():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="zoo-building-", dir=cache_root))
    try:
        _build_zoo(work)
        (work / ".complete").touch()
        with contextlib.suppress(OSError):  # another session finished first: keep theirs
            work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def model_files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Every key of ``truce.zoo.ALL_KEYS`` -> a fresh copy of that artifact (file or folder).

    Seed 0, so ``truce.zoo.TinyMLP()`` / ``keras_mlp()``... compute the reference outputs.
    The set is cached in pytest's cache dir, keyed by zoo.py and the framework versions;
    each session gets its own copy, so tests may modify or delete files.
    """
    from truce import zoo

    missing = [m for m in ("torch", "tensorflow", "keras", "executorch") if not _has(m)]
    if missing:
        pytest.skip(f"the model zoo needs {', '.join(missing)}: pip install 'truce[convert]'")
    cache = getattr(request.config, "cache", None)
    out = tmp_path_factory.mktemp("zoo")
    if cache is None:
        _build_zoo(out)
    else:
        shutil.copytree(_cached_zoo(Path(cache.mkdir("truce"))), out, dirs_exist_ok=True)
    files = {key: out / name for key, name in zoo.FILE_NAMES.items()}
    absent = [k for k, p in files.items() if not p.exists()]
    assert not absent, f"the zoo did not write {absent}"
    return files


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
