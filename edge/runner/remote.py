"""The device side of ``truce edge deploy / rollback / status`` (standard library only).

The host sends this file over SSH and runs it with the device's Python
(``ssh HOST python3 - COMMAND ...``), so the device needs no Truce install. Layout::

    DIR/releases/<release>/   one unpacked, verified bundle per deploy
    DIR/current -> releases/<release>    switched atomically (symlink + rename)
    DIR/state.json            {"stack": [older ..., current], "python": ..., "unit": ...}
    DIR/incoming/             uploads in progress
    DIR/trusted_key.pub       optional: bundles must be signed by this key

``install`` checks the archive's sha256, unpacks it safely into a temporary folder, verifies
the bundle with its own runner, runs one smoke inference, and only then renames it into
``releases/`` and switches ``current``. Any failure before the switch leaves ``current``
untouched; a failure after it (the systemd restart) switches back. Every command prints one
JSON line last: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

MAX_BYTES = 2 << 30
MAX_ENTRIES = 10_000
UNIT_PREFIX = "truce-edge-"
#: where the systemd unit is written (default: /etc/systemd/system as root, else the user's)
UNIT_DIR_ENV = "TRUCE_EDGE_UNIT_DIR"


class Refused(Exception):
    """A step failed; the message is one line for the person deploying."""


# --- safe extraction (also used by the host to open .tar.gz bundles) ----------------------
def _member_path(name: str) -> str:
    p = PurePosixPath(name)
    parts = [x for x in p.parts if x != "."]
    if not parts or p.is_absolute() or ".." in parts or "\\" in name or "\0" in name:
        raise Refused(f"the archive has an unsafe entry {name[:80]!r}; refusing to unpack it")
    return "/".join(parts)


def safe_extract(
    archive: Path, dest: Path, *, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES
) -> None:
    """Unpack a .tar.gz into the new folder ``dest``: regular files and folders only.

    Every entry is checked before anything is written: no absolute paths, no ``..``, no
    links or device files, at most ``max_entries`` entries and ``max_bytes`` in total.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            total = 0
            for m in tar:
                members.append(m)
                if len(members) > max_entries:
                    raise Refused(f"the archive has more than {max_entries} entries")
                if not (m.isfile() or m.isdir()):
                    raise Refused(f"the archive entry {m.name[:80]!r} is a link or special file")
                _member_path(m.name)
                total += m.size
                if total > max_bytes:
                    raise Refused(f"the archive unpacks to more than {max_bytes} bytes")
            dest.mkdir(parents=True)
            for m in members:
                target = dest.joinpath(*_member_path(m.name).split("/"))
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                if src is None:
                    raise Refused(f"cannot read archive entry {m.name[:80]!r}")
                with src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out)
                target.chmod(0o755 if m.mode & 0o111 else 0o644)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Refused(f"the archive is damaged or not a .tar.gz ({type(exc).__name__})") from None


# --- helpers ----------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "state.json").read_text())
        return data if isinstance(data, dict) else {"stack": []}
    except (OSError, ValueError):
        return {"stack": []}


def _write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / ".state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(root / "state.json")


def _switch(root: Path, release: str) -> None:
    tmp = root / ".current.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(f"releases/{release}")
    tmp.replace(root / "current")  # rename(2) over the old link: atomic


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _runner(python: str, bundle: Path, args: list[str], timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(bundle), PYTHONDONTWRITEBYTECODE="1")
    try:
        done = subprocess.run(
            [python, "-m", "edge.runner", *args],
            cwd=str(bundle),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise Refused(f"'edge.runner {args[0]}' took more than {timeout:.0f} s") from None
    except OSError as exc:
        raise Refused(f"cannot start {python!r} on the device ({exc.strerror})") from None
    if done.returncode != 0:
        raise Refused(f"'edge.runner {args[0]}' failed on the device: {_tail(done.stderr)}")
    return done.stdout


def _trusted_args(root: Path) -> list[str]:
    key = root / "trusted_key.pub"
    return ["--trusted-key", str(key)] if key.is_file() else []


# --- systemd ------------------------------------------------------------------------------
def _systemctl(*args: str) -> None:
    cmd = ["systemctl"] if os.geteuid() == 0 else ["systemctl", "--user"]
    try:
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Refused(f"systemctl {args[0]} failed ({type(exc).__name__})") from None
    if done.returncode != 0:
        raise Refused(f"systemctl {' '.join(args)} failed: {_tail(done.stderr or done.stdout)}")


def unit_text(root: Path, python: str, host: str, port: int) -> str:
    """The systemd unit that serves ``DIR/current`` (restarted after each switch)."""
    cur = root / "current"
    trust = " ".join(_trusted_args(root))
    return (
        "[Unit]\nDescription=Truce edge runner (OIP v2 REST)\nAfter=network-online.target\n\n"
        "[Service]\n"
        f"WorkingDirectory={cur}\nEnvironment=PYTHONPATH={cur}\nEnvironment=PYTHONDONTWRITEBYTECODE=1\n"
        f"ExecStart={python} -m edge.runner serve {cur} --host {host} --port {port} {trust}\n"
        "Restart=on-failure\nRestartSec=2\n\n[Install]\nWantedBy=default.target\n"
    )


def _install_unit(root: Path, name: str, python: str, host: str, port: int) -> str:
    unit = f"{UNIT_PREFIX}{name}.service"
    if os.environ.get(UNIT_DIR_ENV):
        folder = Path(os.environ[UNIT_DIR_ENV])
    elif os.geteuid() == 0:
        folder = Path("/etc/systemd/system")
    else:
        folder = Path.home() / ".config" / "systemd" / "user"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / unit).write_text(unit_text(root, python, host, port))
    _systemctl("daemon-reload")
    _systemctl("enable", unit)
    _systemctl("restart", unit)
    return unit


# --- commands -----------------------------------------------------------------------------
def install(a: dict[str, Any]) -> dict[str, Any]:
    root = Path(a["dir"])
    incoming = root / "incoming" / a["upload"]
    if _sha256(incoming) != a["sha256"]:
        incoming.unlink()
        raise Refused("the uploaded archive does not match its sha256; upload it again")
    # a newly pinned key takes effect only when this deploy succeeds
    new_key = root / ".trusted_key.pub.new"
    if a.get("trusted_key"):
        new_key.write_text(a["trusted_key"].strip() + "\n")
    trust = ["--trusted-key", str(new_key)] if a.get("trusted_key") else _trusted_args(root)
    # microseconds: releases pruned within the same second must not have their names reused
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    release = stamp + "-" + a["sha256"][:12]
    releases = root / "releases"
    releases.mkdir(exist_ok=True)
    n = 1
    while (releases / release).exists():
        n += 1
        release = release.split("~")[0] + f"~{n}"
    tmp = releases / f".tmp-{release}"
    try:
        safe_extract(incoming, tmp)
        python = a["python"]
        if a.get("install_requirements"):
            venv = root / "venv"
            if not (venv / "bin" / "python").exists():
                subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r"]
            done = subprocess.run(
                [*pip, str(tmp / "requirements.txt")], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise Refused(f"installing the requirements failed: {_tail(done.stderr)}")
            python = str(venv / "bin" / "python")
        _runner(python, tmp, ["verify", str(tmp), *trust], a["timeout"])
        smoke = _runner(python, tmp, ["run", str(tmp), "--example", "--json"], a["timeout"])
        tmp.rename(releases / release)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        new_key.unlink(missing_ok=True)
        raise
    finally:
        incoming.unlink(missing_ok=True)
    if a.get("trusted_key"):
        new_key.replace(root / "trusted_key.pub")
    state = _state(root)
    previous = state["stack"][-1] if state["stack"] else None
    _switch(root, release)
    state["stack"] = [*state["stack"], release]
    state["python"] = python
    _write_state(root, state)
    unit = None
    if a.get("systemd"):
        try:
            meta = json.loads((releases / release / "bundle.json").read_text())
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(meta["model"].get("name", "model")))[:64]
            unit = _install_unit(root, name, python, a["serve_host"], a["serve_port"])
        except Refused as exc:
            if previous is not None:
                _switch(root, previous)
            state["stack"] = state["stack"][:-1]
            _write_state(root, state)
            shutil.rmtree(releases / release, ignore_errors=True)
            raise Refused(f"{exc}; the device stays on its previous bundle") from None
        state["unit"] = unit
        _write_state(root, state)
    pruned = _prune(root, state, int(a.get("keep", 5)))
    return {
        "release": release,
        "previous": previous,
        "smoke": _last_json(smoke),
        "unit": unit,
        "pruned": pruned,
    }


def _last_json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _prune(root: Path, state: dict[str, Any], keep: int) -> list[str]:
    keep_set = set(state["stack"][-max(keep, 2) :])
    state["stack"] = [r for r in state["stack"] if r in keep_set]
    _write_state(root, state)
    pruned = []
    for d in sorted((root / "releases").iterdir()):
        if d.name not in keep_set and not d.name.startswith("."):
            shutil.rmtree(d, ignore_errors=True)
            pruned.append(d.name)
    return pruned


def rollback(a: dict[str, Any]) -> dict[str, Any]:
    root = Path(a["dir"])
    state = _state(root)
    stack = state["stack"]
    if len(stack) < 2:
        raise Refused("there is no previous bundle on this device to roll back to")
    previous, current = stack[-2], stack[-1]
    if not (root / "releases" / previous).is_dir():
        raise Refused(f"the previous bundle {previous} is no longer on the device")
    _switch(root, previous)
    state["stack"] = stack[:-1]
    _write_state(root, state)
    if state.get("unit"):
        _systemctl("restart", state["unit"])
    shutil.rmtree(root / "releases" / current, ignore_errors=True)
    return {"release": previous, "rolled_back": current}


def status(a: dict[str, Any]) -> dict[str, Any]:
    root = Path(a["dir"])
    state = _state(root)
    cur = root / "current"
    # os.readlink, not Path.readlink: devices may run Python 3.8
    release = os.readlink(cur).split("/")[-1] if cur.is_symlink() else None  # noqa: PTH115
    bundle: dict[str, Any] | None = None
    if release is not None:
        try:
            meta = json.loads((cur / "bundle.json").read_text())
            bundle = {k: meta.get(k) for k in ("model", "source", "target", "created_at")}
            bundle["signed"] = (cur / "bundle.sig").is_file()
        except (OSError, ValueError):
            bundle = None
    return {
        "release": release,
        "bundle": bundle,
        "history": state["stack"],
        "unit": state.get("unit"),
        "python": state.get("python"),
    }


COMMANDS = {"install": install, "rollback": rollback, "status": status}


def main(argv: list[str]) -> int:
    """``remote.py COMMAND JSON_ARGS``; prints one JSON result line."""
    try:
        if len(argv) != 2 or argv[0] not in COMMANDS:
            raise Refused(f"usage: remote.py {'|'.join(COMMANDS)} JSON")
        a = json.loads(argv[1])
        root = Path(a["dir"])
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise Refused("another deploy is running on this device; try again") from None
            result = COMMANDS[argv[0]](a)
        print(json.dumps({"ok": True, **result}))
        return 0
    except Refused as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    except (OSError, subprocess.SubprocessError, KeyError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
