"""Ed25519 keys and signatures on the host (needs ``cryptography``, in the ``edge`` extra).

Private keys: unencrypted PEM (PKCS#8, as written by ``truce edge keygen``) or an OpenSSH
``ssh-keygen -t ed25519 -N ''`` key. Public keys: ``.pub`` files in OpenSSH form. Devices
verify with ``edge.runner.ed25519``, which needs only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from truce.errors import InvalidArgument, MissingDependency, NotFound


def _serialization() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise MissingDependency("cryptography", "edge") from None
    return serialization


def load_private_key(path: Path) -> Any:
    """The ``Ed25519PrivateKey`` in ``path``; a one-line error for anything else."""
    serialization = _serialization()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError:
        raise NotFound(f"cannot read the signing key {Path(path).name!r}") from None
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidArgument(
            "the signing key is encrypted; use an unencrypted Ed25519 key "
            "(truce edge keygen KEY) kept on the build machine only"
        ) from None
    except Exception as exc:  # cryptography raises several types
        raise InvalidArgument(
            f"{Path(path).name} is not a PEM or OpenSSH private key ({type(exc).__name__}); "
            "create one with: truce edge keygen KEY"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument("the signing key must be Ed25519 (truce edge keygen KEY)")
    return key


def public_bytes(key: Any) -> bytes:
    """The 32 raw bytes of a private key's public half."""
    s = _serialization()
    raw: bytes = key.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
    return raw


def public_openssh(key: Any, comment: str = "truce-edge") -> str:
    s = _serialization()
    text: bytes = key.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH)
    return f"{text.decode()} {comment}\n"


def sign(key: Any, message: bytes) -> bytes:
    sig: bytes = key.sign(message)
    return sig


def keygen(path: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new private key (mode 0600) to ``path`` and its public key to ``path.pub``."""
    s = _serialization()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    if not overwrite and (path.exists() or pub.exists()):
        raise InvalidArgument(f"{path.name} or {pub.name} exists; choose another name")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub.write_text(public_openssh(key))
    return path, pub
