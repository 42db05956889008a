"""Bundles: layout, hashes, deterministic archives, tampering and signatures refused."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edge import bundle as bundles
from edge.runner.remote import Refused, safe_extract
from edge.runner.verify import BundleError, parse_public_key, verify_bundle
from tests.edge.conftest import BundleFactory, runner_cmd, runner_env
from truce.errors import AlreadyExists, IntegrityError, InvalidArgument


def test_layout_and_verify(make_bundle: BundleFactory) -> None:
    d = make_bundle("mlp-rpi")
    archive = d.with_name("mlp-rpi.tar.gz")
    assert archive.is_file()
    meta = json.loads((d / "bundle.json").read_text())
    files = set(meta["files"])
    assert {"model/model.tflite", "requirements.txt", "README.md", "edge/interpreter.py"} <= files
    assert {"edge/runner/cli.py", "edge/runner/serve.py", "edge/runner/verify.py"} <= files
    assert meta["model"] == {
        "name": "mlp",
        "version": 1,
        "format": "tflite",
        "path": "model/model.tflite",
    }
    assert meta["signature"]["inputs"][0]["datatype"] == "FP32"
    reqs = (d / "requirements.txt").read_text()
    assert "ai-edge-litert" in reqs and "tflite-runtime" in reqs and "torch" not in reqs
    assert verify_bundle(d)["_signed_by"] is None
    assert bundles.verify(archive)["model"]["name"] == "mlp"
    # the archive has no top folder, no owners, no links
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert all(m.isfile() and not m.name.startswith(("/", "..")) for m in members)
    assert {m.uid for m in members} == {0} and {m.mtime for m in members} == {0}


def test_archive_is_deterministic(make_bundle: BundleFactory, tmp_path: Path) -> None:
    d = make_bundle("x")
    a = bundles.pack(d, tmp_path / "a.tar.gz")
    b = bundles.pack(d, tmp_path / "b.tar.gz")
    assert a == b


def test_existing_output_is_refused(make_bundle: BundleFactory) -> None:
    make_bundle("same")
    with pytest.raises(AlreadyExists):
        make_bundle("same")


def test_unsupported_format_refused(make_bundle: BundleFactory) -> None:
    with pytest.raises(InvalidArgument, match="cannot go into an edge bundle"):
        make_bundle("onnx", fmt="onnx")


@pytest.mark.parametrize("change", ["model", "runner", "unlisted", "symlink", "missing"])
def test_tampered_bundle_refused(make_bundle: BundleFactory, change: str) -> None:
    d = make_bundle(change)
    if change == "model":
        data = bytearray((d / "model/model.tflite").read_bytes())
        data[-100] ^= 0xFF
        (d / "model/model.tflite").write_bytes(bytes(data))
    elif change == "runner":
        with (d / "edge/runner/model.py").open("a") as f:
            f.write("\nprint('owned')\n")
    elif change == "unlisted":
        (d / "edge/runner/evil.py").write_text("x = 1\n")
    elif change == "symlink":
        (d / "README.md").unlink()
        (d / "README.md").symlink_to("/etc/passwd")
    else:
        (d / "requirements.txt").unlink()
    with pytest.raises(BundleError):
        verify_bundle(d)
    with pytest.raises(IntegrityError):
        bundles.verify(d)
    # the device-side runner refuses it too, with one line and exit status 3
    done = subprocess.run(
        runner_cmd("verify", "."), cwd=d, env=runner_env(), capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_pycache_is_ignored(make_bundle: BundleFactory) -> None:
    d = make_bundle("pyc")
    (d / "edge/runner/__pycache__").mkdir()
    (d / "edge/runner/__pycache__/cli.cpython-311.pyc").write_bytes(b"x")
    verify_bundle(d)


def test_signed_bundle(make_bundle: BundleFactory, signing_key: tuple[Path, Path]) -> None:
    key, pub = signing_key
    d = make_bundle("signed", sign_key=key)
    trusted = [parse_public_key(pub.read_text())]
    meta = verify_bundle(d, trusted)
    assert meta["_signed_by"] == trusted[0].hex()
    # works without trusted keys too (integrity only)
    verify_bundle(d)
    done = subprocess.run(
        runner_cmd("verify", ".", "--trusted-key", str(pub)),
        cwd=d,
        env=runner_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # a device without the cryptography package verifies with the pure-Python code
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from edge.runner.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    wrong = d.parent / "wrong.pub"
    wrong.write_text("00" * 32)
    for key_file, status in ((pub, 0), (wrong, 3)):
        done = subprocess.run(
            [sys.executable, "-c", code, "verify", ".", "--trusted-key", str(key_file)],
            cwd=d,
            env=runner_env(),
            capture_output=True,
            text=True,
        )
        assert done.returncode == status, done.stderr


def test_signed_bundle_tampered_refused(
    make_bundle: BundleFactory, signing_key: tuple[Path, Path], tmp_path: Path
) -> None:
    from edge.signing import keygen

    key, pub = signing_key
    trusted = [parse_public_key(pub.read_text())]
    d = make_bundle("t1", sign_key=key)
    meta_path = d / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["target"] = "android"  # any change to bundle.json breaks the signature
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    with pytest.raises(BundleError, match="signature does not verify"):
        verify_bundle(d)

    # a bundle signed by someone else is refused where a key is pinned
    other_key, _ = keygen(tmp_path / "other.key")
    d2 = make_bundle("t2", sign_key=other_key)
    verify_bundle(d2)
    with pytest.raises(BundleError, match="does not trust"):
        verify_bundle(d2, trusted)

    # an unsigned bundle is refused where a key is pinned
    d3 = make_bundle("t3")
    with pytest.raises(BundleError, match="not signed"):
        verify_bundle(d3, trusted)

    # the model changed after signing: the file hash no longer matches
    d4 = make_bundle("t4", sign_key=key)
    with (d4 / "model/model.tflite").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"model/model\.tflite"):
        verify_bundle(d4, trusted)


def test_public_key_forms(signing_key: tuple[Path, Path]) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from edge.signing import load_private_key, public_bytes

    key = load_private_key(signing_key[0])
    raw = public_bytes(key)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert parse_public_key(signing_key[1].read_text()) == raw
    assert parse_public_key(pem) == raw
    assert parse_public_key(raw.hex()) == raw
    with pytest.raises(BundleError, match="not an Ed25519 public key"):
        parse_public_key("ssh-rsa AAAAB3NzaC1yc2E= me")


def test_signing_key_forms(tmp_path: Path, make_bundle: BundleFactory) -> None:
    from edge.signing import keygen, load_private_key

    key = tmp_path / "ossh"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    make_bundle("ossh", sign_key=key)  # an OpenSSH ed25519 key signs bundles too
    enc = tmp_path / "enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(enc)], check=True)
    with pytest.raises(InvalidArgument, match="encrypted"):
        load_private_key(enc)
    rsa = tmp_path / "rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True
    )
    with pytest.raises(InvalidArgument, match="Ed25519"):
        load_private_key(rsa)
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(InvalidArgument, match="not a PEM or OpenSSH"):
        load_private_key(tmp_path / "junk")
    k, pub = keygen(tmp_path / "k")
    assert oct(k.stat().st_mode & 0o777) == "0o600" and pub.read_text().startswith("ssh-ed25519 ")
    with pytest.raises(InvalidArgument, match="exists"):
        keygen(tmp_path / "k")


# --- safe extraction ------------------------------------------------------------------
def _tar(path: Path, entries: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_file("ok"), _file("../evil")], "unsafe entry"),
        ([_file("/etc/evil")], "unsafe entry"),
        ([_file("a/../../evil")], "unsafe entry"),
        ([_link("l", "/etc/passwd", tarfile.SYMTYPE)], "link or special"),
        ([_file("ok"), _link("h", "ok", tarfile.LNKTYPE)], "link or special"),
        ([_link("dev", "", tarfile.CHRTYPE)], "link or special"),
    ],
)
def test_safe_extract_refuses(tmp_path: Path, entries: list[tarfile.TarInfo], message: str) -> None:
    archive = _tar(tmp_path / "a.tar.gz", entries)
    dest = tmp_path / "out"
    with pytest.raises(Refused, match=message):
        safe_extract(archive, dest)
    assert not dest.exists()  # refused before any write
    assert not (tmp_path / "evil").exists()


def test_safe_extract_caps(tmp_path: Path) -> None:
    many = _tar(tmp_path / "many.tar.gz", [_file(f"f{i}") for i in range(30)])
    with pytest.raises(Refused, match="more than 20 entries"):
        safe_extract(many, tmp_path / "o1", max_entries=20)
    big = _tar(tmp_path / "big.tar.gz", [_file("big", 5000)], data=b"y" * 5000)
    with pytest.raises(Refused, match="more than 1000 bytes"):
        safe_extract(big, tmp_path / "o2", max_bytes=1000)
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(Refused, match="damaged"):
        safe_extract(tmp_path / "bad.tar.gz", tmp_path / "o3")
    assert not any((tmp_path / d).exists() for d in ("o1", "o2"))


def test_out_path_forms(tmp_path: Path) -> None:
    assert bundles.bundle_paths(tmp_path / "x.tar.gz") == (tmp_path / "x", tmp_path / "x.tar.gz")
    assert bundles.bundle_paths(tmp_path / "x") == (tmp_path / "x", tmp_path / "x.tar.gz")
