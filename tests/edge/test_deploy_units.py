"""Deploy plumbing without SSH: target URLs, inventories, the device agent run locally."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.deploy import Ssh, SshOptions, Target, parse_target, read_inventory
from edge.runner import remote
from tests.edge.conftest import BundleFactory
from truce.errors import InvalidArgument


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("ssh://pi@raspberrypi.local/opt/truce", Target("raspberrypi.local", "/opt/truce", "pi")),
        ("ssh://pi@10.0.0.5:2222/opt/truce/", Target("10.0.0.5", "/opt/truce", "pi", 2222)),
        ("ssh://host/~/truce", Target("host", "truce")),
        ("ssh://u@[::1]:22/srv/x", Target("[::1]", "/srv/x", "u", 22)),
    ],
)
def test_parse_target(url: str, target: Target) -> None:
    assert parse_target(url) == target
    assert parse_target(str(target)) == target


@pytest.mark.parametrize(
    "url",
    [
        "http://pi@host/opt",
        "ssh://pi@host",
        "ssh://pi@host/",
        "ssh://pi:secret@host/opt",
        "ssh://-oProxyCommand=x/opt",
        "ssh://pi@host/opt/../etc",
        "ssh://pi@host:99999/opt",
        "ssh://p i@host/opt",
        "ssh://pi@host/opt?x=1",
    ],
)
def test_bad_targets(url: str) -> None:
    with pytest.raises(InvalidArgument, match="bad target"):
        parse_target(url)


def test_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inv"
    inv.write_text("# fleet\nssh://pi@a/opt/t\n\n  ssh://pi@b:2200/opt/t  # shed\n")
    assert [t.host for t in read_inventory(inv)] == ["a", "b"]
    inv.write_text("ssh://pi@a/opt/t\nnot-a-url\n")
    with pytest.raises(InvalidArgument):
        read_inventory(inv)


def test_ssh_argv_is_batch_and_quoted() -> None:
    t = parse_target("ssh://pi@host:2222/opt/truce")
    argv = Ssh(t, SshOptions(identity=Path("/k"), known_hosts=Path("/kh"))).argv("true")
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/kh" in argv
    assert argv[-3:] == ["--", "pi@host", "true"]
    assert "StrictHostKeyChecking=accept-new" in Ssh(t, SshOptions()).argv("true")


def _agent(command: str, args: dict[str, object]) -> dict[str, object]:
    """Run remote.py as the device runs it: a script on stdin of the device's Python."""
    done = subprocess.run(
        [sys.executable, "-", command, json.dumps(args)],
        input=Path(remote.__file__).read_bytes(),
        capture_output=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert (done.returncode == 0) == bool(result["ok"])
    return result


def _upload(device: Path, archive: Path) -> tuple[str, str]:
    (device / "incoming").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, device / "incoming" / "up.tar.gz")
    return "up.tar.gz", hashlib.sha256(archive.read_bytes()).hexdigest()


def test_agent_checks_sha_and_locks(make_bundle: BundleFactory, tmp_path: Path) -> None:
    archive = make_bundle("a").with_name("a.tar.gz")
    device = tmp_path / "dev"
    upload, sha = _upload(device, archive)
    base = {"dir": str(device), "upload": upload, "python": sys.executable, "timeout": 60}
    r = _agent("install", {**base, "sha256": "0" * 64})
    assert not r["ok"] and "does not match its sha256" in str(r["error"])
    assert not (device / "incoming" / upload).exists() and not (device / "current").exists()

    upload, sha = _upload(device, archive)
    with (device / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = _agent("install", {**base, "sha256": sha})
    assert not r["ok"] and "another deploy is running" in str(r["error"])

    r = _agent("install", {**base, "sha256": sha})
    assert r["ok"], r
    assert (device / "current" / "bundle.json").is_file()
    assert _agent("status", {"dir": str(device)})["release"] == r["release"]
    assert _agent("nope", {"dir": str(device)})["ok"] is False


def test_agent_prunes_old_releases(make_bundle: BundleFactory, tmp_path: Path) -> None:
    archive = make_bundle("p").with_name("p.tar.gz")
    device = tmp_path / "dev"
    releases: list[str] = []
    for _ in range(4):
        upload, sha = _upload(device, archive)
        r = _agent(
            "install",
            {
                "dir": str(device),
                "upload": upload,
                "sha256": sha,
                "python": sys.executable,
                "timeout": 60,
                "keep": 2,
            },
        )
        assert r["ok"], r
        releases.append(str(r["release"]))
    assert len(set(releases)) == 4  # the same bundle twice still gets its own release
    assert sorted(p.name for p in (device / "releases").iterdir()) == sorted(releases[-2:])
    state = json.loads((device / "state.json").read_text())
    assert state["stack"] == releases[-2:]


def test_unit_text() -> None:
    text = remote.unit_text(Path("/opt/truce"), "/opt/truce/venv/bin/python", "0.0.0.0", 8080)
    assert "ExecStart=/opt/truce/venv/bin/python -m edge.runner serve /opt/truce/current" in text
    assert "Environment=PYTHONPATH=/opt/truce/current" in text and "Restart=on-failure" in text
