"""``truce edge deploy / rollback / status`` over SSH, with the system's OpenSSH client.

Why the system ``ssh`` and not paramiko: it uses the keys, agent, ``~/.ssh/config``
(ProxyJump, per-host users and ports) and ``known_hosts`` people already have for their
devices, and it is what CI tests against. Only keys are used: ``BatchMode=yes`` turns any
password prompt into an error. Unknown host keys are accepted on first contact and pinned
(``StrictHostKeyChecking=accept-new``); give ``--known-hosts FILE`` to require a known key.

Per target: upload the ``.tar.gz`` (``ssh HOST 'cat > DIR/incoming/...'``), then run
``edge/runner/remote.py`` with the device's Python (sent on stdin), which checks the
sha256, unpacks, verifies, smoke-tests and only then switches ``DIR/current`` (see that
module). A failed step leaves the device on its previous bundle.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edge import bundle as bundles
from edge.runner.verify import trusted_keys_from
from truce.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

REMOTE_SCRIPT = Path(__file__).resolve().parent / "runner" / "remote.py"
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,252})|\[[0-9A-Fa-f:.]+\])$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """``ssh://[user@]host[:port]/dir``; a dir starting with ``~/`` is under the home folder."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        host = self.host.strip("[]")
        return f"{self.user}@{host}" if self.user else host

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        path = self.path if self.path.startswith("/") else f"/~/{self.path}"
        return f"ssh://{user}{self.host}{port}{path}"


def parse_target(text: str) -> Target:
    """Parse and validate a target URL (nothing from it reaches a shell unquoted)."""
    bad = InvalidArgument(
        f"bad target {text[:80]!r}: write ssh://[user@]host[:port]/absolute/dir "
        "or ssh://user@host/~/dir"
    )
    try:
        u = urlsplit(text.strip())
        port = u.port
    except ValueError:
        raise bad from None
    host = u.hostname or ""
    if ":" in host:  # an IPv6 literal, written in brackets in the URL
        host = f"[{host}]"
    if u.scheme != "ssh" or not _HOST.match(host) or u.password or u.query or u.fragment:
        raise bad
    user = unquote(u.username) if u.username else None
    if user is not None and not _USER.match(user):
        raise bad
    path = unquote(u.path)
    if path.startswith("/~/"):
        path = path[3:]
    if not path.strip("/") or any(c in path for c in "\0\n\r") or ".." in path.split("/"):
        raise bad
    return Target(host=host, path=path.rstrip("/") or "/", user=user, port=port)


def read_inventory(path: Path) -> list[Target]:
    """Targets from a file: one URL per line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        raise NotFound(f"cannot read the inventory {Path(path).name!r}") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [parse_target(ln) for ln in lines if ln]


def collect_targets(urls: list[str], inventory: Path | None) -> list[Target]:
    targets = [parse_target(u) for u in urls]
    if inventory is not None:
        targets += read_inventory(inventory)
    if not targets:
        raise InvalidArgument("name at least one target ssh://user@host/dir or --inventory FILE")
    return targets


@dataclass
class SshOptions:
    identity: Path | None = None
    known_hosts: Path | None = None
    python: str = "python3"
    connect_timeout: int = 10
    timeout: float = 600.0


class Ssh:
    """One target reached with the system ``ssh`` client."""

    def __init__(self, target: Target, opts: SshOptions) -> None:
        self.target = target
        self.opts = opts

    def argv(self, remote_command: str) -> list[str]:
        o = self.opts
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={o.connect_timeout}"]
        if o.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={o.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        else:
            argv += ["-o", "StrictHostKeyChecking=accept-new"]
        if o.identity is not None:
            argv += ["-i", str(o.identity), "-o", "IdentitiesOnly=yes"]
        if self.target.port:
            argv += ["-p", str(self.target.port)]
        return [*argv, "--", self.target.destination, remote_command]

    def run(self, remote_command: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        try:
            done = subprocess.run(
                self.argv(remote_command),
                input=stdin,
                capture_output=True,
                timeout=self.opts.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"no answer within {self.opts.timeout:.0f} s") from None
        except FileNotFoundError:
            raise FailedPrecondition("the OpenSSH client 'ssh' is not installed here") from None
        if done.returncode == 255:  # ssh's own failure: connection, authentication, host key
            raise Unavailable(f"ssh failed: {_last_line(done.stderr)}")
        return done

    def call(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run ``remote.py COMMAND`` on the device; its JSON result (``ok`` checked)."""
        remote = f"{shlex.quote(self.opts.python)} - {command} {shlex.quote(json.dumps(args))}"
        done = self.run(remote, REMOTE_SCRIPT.read_bytes())
        result = _last_json(done.stdout)
        if result is None:
            raise FailedPrecondition(
                "the device's Python did not run the deploy agent "
                f"({_last_line(done.stderr)}); check --python"
            )
        if not result.get("ok"):
            raise FailedPrecondition(str(result.get("error", "failed")))
        return result


def _last_line(data: bytes) -> str:
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


def _last_json(data: bytes) -> dict[str, Any] | None:
    for line in reversed(data.decode(errors="replace").strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


@dataclass
class DeployOptions:
    install_requirements: bool = False
    systemd: bool = False
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    trusted_key: Path | None = None
    keep: int = 5
    smoke_timeout: float = 300.0


def prepare(
    bundle_path: Path, trusted_key: Path | None, workdir: Path
) -> tuple[Path, str, dict[str, Any]]:
    """Verify the bundle here first; return ``(archive, sha256, bundle.json)``."""
    keys = trusted_keys_from([str(trusted_key)]) if trusted_key else []
    meta = bundles.verify(bundle_path, keys)
    path = Path(bundle_path)
    if path.is_dir():
        archive = workdir / "bundle.tar.gz"
        sha = bundles.pack(path, archive)
    else:
        archive = path
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return archive, sha, meta


def deploy_one(
    target: Target, archive: Path, sha: str, ssh_opts: SshOptions, opts: DeployOptions
) -> dict[str, Any]:
    """Upload and install on one device; raises on failure (the device keeps its bundle)."""
    ssh = Ssh(target, ssh_opts)
    folder = shlex.quote(target.path)
    upload = f"upload-{sha[:16]}.tar.gz"
    done = ssh.run(
        f"mkdir -p {folder}/incoming && cat > {folder}/incoming/{upload}", archive.read_bytes()
    )
    if done.returncode != 0:
        raise FailedPrecondition(f"upload failed: {_last_line(done.stderr)}")
    args: dict[str, Any] = {
        "dir": target.path,
        "upload": upload,
        "sha256": sha,
        "python": ssh_opts.python,
        "install_requirements": opts.install_requirements,
        "systemd": opts.systemd,
        "serve_host": opts.serve_host,
        "serve_port": opts.serve_port,
        "keep": opts.keep,
        "timeout": opts.smoke_timeout,
    }
    if opts.trusted_key is not None:
        args["trusted_key"] = Path(opts.trusted_key).read_text(encoding="utf-8")
    return ssh.call("install", args)


def deploy(
    bundle_path: Path,
    targets: list[Target],
    ssh_opts: SshOptions,
    opts: DeployOptions,
    progress: Progress = lambda _m: None,
) -> list[dict[str, Any]]:
    """Deploy to every target in turn; one report per target (``ok`` false on failure)."""
    with tempfile.TemporaryDirectory(prefix="truce-deploy-") as tmp:
        archive, sha, meta = prepare(bundle_path, opts.trusted_key, Path(tmp))
        model = meta["model"]
        reports = []
        for t in targets:
            progress(f"{t}: deploying {model.get('name')} v{model.get('version')} ({sha[:12]})")
            try:
                result = deploy_one(t, archive, sha, ssh_opts, opts)
                reports.append({"target": str(t), **result})
            except (FailedPrecondition, Unavailable) as exc:
                reports.append({"target": str(t), "ok": False, "error": exc.message})
        return reports


def each(command: str, targets: list[Target], ssh_opts: SshOptions) -> list[dict[str, Any]]:
    """Run ``rollback`` or ``status`` on every target; one report each."""
    reports = []
    for t in targets:
        try:
            reports.append({"target": str(t), **Ssh(t, ssh_opts).call(command, {"dir": t.path})})
        except (FailedPrecondition, Unavailable) as exc:
            reports.append({"target": str(t), "ok": False, "error": exc.message})
    return reports
