"""What produced the numbers: machine, OS, Python and the version of every piece measured."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from loadtests.bench.peers import PEERS_DIR, peer_bin


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return "unknown"
    return f"{kib / 2**20:.0f} GiB"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _peer_version(peer: str, dist: str) -> str:
    python = peer_bin(peer, "python", PEERS_DIR)
    if not python.exists():
        return "peer venv missing"
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "unknown"


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _java_version() -> str:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    text = done.stderr.strip().splitlines()
    return text[0] if text else "unknown"


def versions(kinds: list[str]) -> dict[str, str]:
    """Machine and versions for BENCHMARKS.md; peers only when they were part of the run."""
    info = {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "memory": _memory_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "truce": _version("truce"),
        "torch": _version("torch"),
        "uvicorn": _version("uvicorn"),
        "grpcio": _version("grpcio"),
        "wrk": _wrk_version(),
    }
    if "torchserve" in kinds:
        info["TorchServe"] = _peer_version("torchserve", "torchserve")
        info["torch (TorchServe venv)"] = _peer_version("torchserve", "torch")
        info["Java"] = _java_version()
    if "mlserver" in kinds:
        info["MLServer"] = _peer_version("mlserver", "mlserver")
        info["torch (MLServer venv)"] = _peer_version("mlserver", "torch")
        info["uvloop (MLServer venv)"] = _peer_version("mlserver", "uvloop")
    return info
