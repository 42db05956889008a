"""Virtualenvs for the servers Truce is compared with: ``build/peers/<name>``.

Each peer (TorchServe, MLServer) gets its own venv installed from the pinned freeze in
``loadtests/bench/requirements-<name>.txt``, so its pins cannot disturb Truce's and Truce's
cannot disturb it. A venv is rebuilt only when its requirements file changes (a stamp holds
the file's hash); a lock file keeps two processes from building the same venv at once.

    python -m loadtests.bench.peers torchserve mlserver     # build or reuse
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from truce.errors import InvalidArgument, Unavailable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS_DIR = ROOT / "build" / "peers"
PEERS = ("torchserve", "mlserver")
#: generous: the first build downloads a few hundred MB from PyPI
INSTALL_TIMEOUT_S = 1800


def requirements(name: str) -> Path:
    if name not in PEERS:
        raise InvalidArgument(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return HERE / f"requirements-{name}.txt"


def venv_dir(name: str, root: Path = PEERS_DIR) -> Path:
    return root / name


def peer_bin(name: str, exe: str, root: Path = PEERS_DIR) -> Path:
    return venv_dir(name, root) / "bin" / exe


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_ready(name: str, root: Path = PEERS_DIR) -> bool:
    stamp = venv_dir(name, root) / ".truce-peer"
    return stamp.exists() and stamp.read_text().strip() == _digest(requirements(name))


def ensure_peer(name: str, root: Path = PEERS_DIR, python: str | None = None) -> Path:
    """Build (or reuse) the peer's venv; returns its folder. ``Unavailable`` if pip fails."""
    req = requirements(name)
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        venv = venv_dir(name, root)
        if is_ready(name, root):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        log = root / f"{name}-install.log"
        print(f"building the {name} peer venv in {venv} (log: {log})", file=sys.stderr)
        steps = [
            [python or sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"],
            [str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(req)],
        ]
        with log.open("w") as out:
            for step in steps:
                try:
                    done = subprocess.run(
                        step, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
                    )
                except subprocess.TimeoutExpired:
                    raise Unavailable(f"building the {name} venv timed out; see {log}") from None
                if done.returncode != 0:
                    raise Unavailable(
                        f"building the {name} venv failed ({' '.join(step[:3])}...); see {log}"
                    )
        (venv / ".truce-peer").write_text(_digest(req) + "\n")
        return venv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("peers", nargs="*", help=f"default: {' '.join(PEERS)}")
    args = parser.parse_args(argv)
    for name in args.peers or PEERS:
        print(ensure_peer(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
