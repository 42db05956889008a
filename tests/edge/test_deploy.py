"""Deploy, rollback and status against a real OpenSSH server on a loopback port."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.edge import sshd
from tests.edge.conftest import build_test_bundle
from truce.cli import main as truce

pytestmark = pytest.mark.skipif(sshd.why_not() is not None, reason=str(sshd.why_not()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.LocalSshd]:
    s = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def device_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The device's Python: this venv's, with a fake ``systemctl`` first on PATH.

    The fake records its calls and fails while ``FAIL`` exists next to it, so the systemd
    steps run for real in ``remote.py`` without touching this machine's services. pip has no
    index there, so ``--install-requirements`` fails the way an offline device does.
    """
    d = tmp_path_factory.mktemp("device")
    (d / "bin").mkdir()
    fake = d / "bin" / "systemctl"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {d}/systemctl.log\n'
        f'if [ -e {d}/FAIL ]; then echo "Failed to connect to bus" >&2; exit 1; fi\n'
    )
    fake.chmod(0o755)
    wrapper = d / "python"
    wrapper.write_text(
        f"#!/bin/sh\nPATH={d / 'bin'}:$PATH TRUCE_EDGE_UNIT_DIR={d / 'units'} PIP_NO_INDEX=1 "
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, tflite_mlp: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bundles")
    v1 = build_test_bundle(out / "v1", tflite_mlp, version=1)
    v2 = build_test_bundle(out / "v2", tflite_mlp, version=2)
    junk = out / "junk.tflite"
    junk.write_bytes(b"TFL3" + os.urandom(2000))  # consistent hashes, but not a model
    broken = build_test_bundle(out / "broken", tflite_mlp, model=junk, version=3)
    return {"v1": v1, "v2": v2, "broken": broken}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = truce(["edge", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def _ssh(server: sshd.LocalSshd, python: Path) -> list[str]:
    return [
        "--identity",
        str(server.identity),
        "--known-hosts",
        str(server.known_hosts),
        "--python",
        str(python),
    ]


def _version(device: Path) -> int:
    return int(json.loads((device / "current" / "bundle.json").read_text())["model"]["version"])


def test_deploy_rollback_status(
    server: sshd.LocalSshd,
    device_python: Path,
    bundles: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device = tmp_path / "opt" / "truce"
    url = server.url(device)
    ssh = _ssh(server, device_python)

    code, reports = _cli(capsys, "status", url, *ssh)
    assert code == 0 and reports[0]["release"] is None

    archive = bundles["v1"].with_name("v1.tar.gz")
    code, reports = _cli(capsys, "deploy", str(archive), url, *ssh)
    assert code == 0, reports
    r = reports[0]
    assert r["ok"] and r["previous"] is None and r["smoke"]["model"] == "mlp"
    assert (device / "current").is_symlink() and _version(device) == 1
    assert not any((device / "incoming").iterdir())  # the upload is removed

    code, reports = _cli(capsys, "deploy", str(bundles["v2"]), url, *ssh)  # a directory works too
    assert code == 0 and reports[0]["previous"] == r["release"]
    assert _version(device) == 2

    code, reports = _cli(capsys, "status", url, *ssh)
    st = reports[0]
    assert st["bundle"]["model"]["version"] == 2 and len(st["history"]) == 2
    assert st["bundle"]["signed"] is False

    code, reports = _cli(capsys, "rollback", url, *ssh)
    assert code == 0 and reports[0]["release"] == r["release"]
    assert _version(device) == 1
    assert len(list((device / "releases").iterdir())) == 1

    code, reports = _cli(capsys, "rollback", url, *ssh)
    assert code == 1 and "no previous bundle" in reports[0]["error"]
    assert _version(device) == 1


def test_failed_deploys_keep_previous(
    server: sshd.LocalSshd,
    device_python: Path,
    bundles: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device = tmp_path / "dev"
    url = server.url(device)
    ssh = _ssh(server, device_python)
    assert _cli(capsys, "deploy", str(bundles["v1"]), url, *ssh)[0] == 0
    before = os.readlink(device / "current")

    # the smoke inference fails on the device: not switched, nothing left behind
    code, reports = _cli(capsys, "deploy", str(bundles["broken"]), url, *ssh)
    assert code == 1 and "failed on the device" in reports[0]["error"]
    assert os.readlink(device / "current") == before
    assert [p.name for p in (device / "releases").iterdir()] == [before.split("/")[-1]]

    # installing the requirements fails (no package index): not switched
    code, reports = _cli(capsys, "deploy", str(bundles["v2"]), url, *ssh, "--install-requirements")
    assert code == 1 and "installing the requirements failed" in reports[0]["error"]
    assert os.readlink(device / "current") == before

    # the systemd restart fails after the switch: switched back
    fail = device_python.parent / "FAIL"
    fail.touch()
    try:
        code, reports = _cli(capsys, "deploy", str(bundles["v2"]), url, *ssh, "--systemd")
    finally:
        fail.unlink()
    assert code == 1 and "stays on its previous bundle" in reports[0]["error"]
    assert os.readlink(device / "current") == before and _version(device) == 1

    # with a working systemctl: unit written, enabled and restarted
    code, reports = _cli(
        capsys, "deploy", str(bundles["v2"]), url, *ssh, "--systemd", "--serve-port", "9001"
    )
    assert code == 0, reports
    unit = (device_python.parent / "units" / reports[0]["unit"]).read_text()
    assert f"serve {device}/current --host 127.0.0.1 --port 9001" in unit
    calls = (device_python.parent / "systemctl.log").read_text()
    assert f"restart {reports[0]['unit']}" in calls
    assert _version(device) == 2

    # a tampered bundle is refused here, before anything is uploaded
    tampered = tmp_path / "tampered"
    shutil.copytree(bundles["v1"], tampered)
    model = tampered / "model" / "model.tflite"
    data = bytearray(model.read_bytes())
    data[-50] ^= 0xFF
    model.write_bytes(bytes(data))
    assert truce(["edge", "deploy", str(tampered), url, *ssh]) == 6  # DATA_LOSS
    assert "does not match its sha256" in capsys.readouterr().err
    assert _version(device) == 2


def test_signed_bundles_and_pinned_key(
    server: sshd.LocalSshd,
    device_python: Path,
    bundles: dict[str, Path],
    tmp_path: Path,
    tflite_mlp: Path,
    signing_key: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, pub = signing_key
    signed = build_test_bundle(tmp_path / "signed", tflite_mlp, sign_key=key, version=5)
    device = tmp_path / "pinned"
    url = server.url(device)
    ssh = _ssh(server, device_python)
    code, reports = _cli(capsys, "deploy", str(signed), url, *ssh, "--trusted-key", str(pub))
    assert code == 0, reports
    assert (device / "trusted_key.pub").read_text().strip() == pub.read_text().strip()
    # the device now refuses bundles without that signature
    code, reports = _cli(capsys, "deploy", str(bundles["v1"]), url, *ssh)
    assert code == 1 and "not signed" in reports[0]["error"]
    assert _version(device) == 5


def test_inventory_and_unreachable(
    server: sshd.LocalSshd,
    device_python: Path,
    bundles: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inv = tmp_path / "devices.txt"
    inv.write_text(
        f"# two devices\n{server.url(tmp_path / 'a')}\n\n{server.url(tmp_path / 'b')}  # kitchen\n"
    )
    code, reports = _cli(
        capsys, "deploy", str(bundles["v1"]), "--inventory", str(inv), *_ssh(server, device_python)
    )
    assert code == 0 and [r["ok"] for r in reports] == [True, True]
    assert _version(tmp_path / "a") == 1 and _version(tmp_path / "b") == 1

    closed = sshd._free_port()
    code, reports = _cli(
        capsys,
        "status",
        f"ssh://root@127.0.0.1:{closed}/x",
        server.url(tmp_path / "a"),
        *_ssh(server, device_python),
    )
    assert code == 1
    assert not reports[0]["ok"] and "ssh failed" in reports[0]["error"]
    assert reports[1]["ok"] and reports[1]["bundle"]["model"]["version"] == 1


def test_missing_device_python(
    server: sshd.LocalSshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, reports = _cli(
        capsys, "status", server.url(tmp_path / "x"), *_ssh(server, tmp_path / "no-python")
    )
    assert code == 1 and "check --python" in reports[0]["error"]
