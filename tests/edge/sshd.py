"""A real OpenSSH server on a loopback port, for deploy tests (needs root and sshd)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def why_not() -> str | None:
    """Why the test sshd cannot run here, or None."""
    if not Path(SSHD).exists():
        return "needs Debian's openssh-server (sshd): run 'make system-deps' as root"
    if shutil.which("ssh") is None:
        return "needs the OpenSSH client (ssh)"
    if os.geteuid() != 0:
        return "the test sshd runs as root (it must switch to the logged-in user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalSshd:
    port: int
    identity: Path
    known_hosts: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def url(self, path: Path | str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(work: Path) -> LocalSshd:
    """Start sshd with a throwaway host key and client key; wait until it accepts."""
    work.mkdir(parents=True, exist_ok=True)
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    subprocess.run([*keygen, "-f", str(work / "host_key")], check=True)
    subprocess.run([*keygen, "-f", str(work / "client_key")], check=True)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    (work / "authorized_keys").chmod(0o600)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    log = work / "sshd.log"
    for _attempt in range(5):
        port = _free_port()
        (work / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
            f"PidFile {work / 'sshd.pid'}\nAuthorizedKeysFile {work / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "StrictModes no\nUsePAM no\nLogLevel VERBOSE\n"
        )
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(work / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None:
            host_pub = (work / "host_key.pub").read_text().split()[:2]
            known = work / "known_hosts"
            known.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub)}\n")
            return LocalSshd(port, work / "client_key", known, proc, log)
    raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")
