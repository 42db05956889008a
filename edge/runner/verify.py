"""Check a bundle before anything in it is used: file hashes, then the optional signature.

A bundle is a directory holding ``bundle.json`` (which lists the sha256 and size of every
other file) and, when signed, ``bundle.sig``: ``{"algorithm": "ed25519", "public_key": hex,
"signature": hex}`` over the exact bytes of ``bundle.json``. So one signature covers every
file. Standard library only (the device may have nothing else).

Policy (the runner and ``truce edge deploy`` apply the same one):
- every listed file must exist as a regular file with its size and sha256; an unlisted file
  (other than Python's ``__pycache__``) is refused;
- a ``bundle.sig`` that does not verify is refused, always;
- with trusted keys given (``--trusted-key`` or ``TRUCE_EDGE_TRUSTED_KEY``), the bundle must
  be signed by one of them. Without trusted keys an embedded signature only proves integrity,
  not who made the bundle: pin a key on devices that must refuse bundles from others.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from edge.runner import ed25519

BUNDLE_JSON = "bundle.json"
SIGNATURE_FILE = "bundle.sig"
BUNDLE_FORMAT = 1
TRUSTED_KEY_ENV = "TRUCE_EDGE_TRUSTED_KEY"
_MAX_META_BYTES = 4 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32 key bytes
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class BundleError(Exception):
    """The bundle is malformed, altered, or not signed as required (one-line message)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def safe_relpath(rel: str) -> str:
    """``rel`` if it is a plain relative POSIX path inside the bundle, else ``BundleError``."""
    p = PurePosixPath(rel)
    if (
        not rel
        or "\\" in rel
        or "\0" in rel
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        raise BundleError(f"bundle lists an unsafe path {rel[:80]!r}; rebuild the bundle")
    return rel


def read_meta(bundle: Path) -> dict[str, Any]:
    """The parsed ``bundle.json`` of a bundle directory, with its basic shape checked."""
    meta_path = bundle / BUNDLE_JSON
    if not meta_path.is_file() or meta_path.is_symlink():
        raise BundleError(f"not a Truce bundle: {BUNDLE_JSON} is missing; pass a bundle directory")
    if meta_path.stat().st_size > _MAX_META_BYTES:
        raise BundleError(f"{BUNDLE_JSON} is too large to be a bundle description")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{BUNDLE_JSON} is not valid JSON; rebuild the bundle") from None
    if not isinstance(meta, dict) or meta.get("bundle_format") != BUNDLE_FORMAT:
        found = meta.get("bundle_format") if isinstance(meta, dict) else None
        raise BundleError(
            f"unsupported bundle format {found!r}; this runner reads format "
            f"{BUNDLE_FORMAT}: export the bundle again"
        )
    for key in ("files", "model", "signature"):
        if not isinstance(meta.get(key), dict):
            raise BundleError(f"{BUNDLE_JSON} has no valid {key!r} section; rebuild the bundle")
    return meta


def check_files(bundle: Path, meta: dict[str, Any]) -> None:
    """Every listed file matches its size and sha256, and nothing unlisted is present."""
    listed: dict[str, Any] = meta["files"]
    for rel in sorted(listed):
        entry = listed[rel]
        path = bundle / safe_relpath(rel)
        try:
            st = path.lstat()
        except OSError:
            raise BundleError(f"bundle file {rel} is missing; copy the whole bundle") from None
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"bundle file {rel} is not a regular file; rebuild the bundle")
        if not isinstance(entry, dict) or st.st_size != entry.get("size"):
            raise BundleError(f"bundle file {rel} has the wrong size: it was altered or truncated")
        if sha256_file(path) != entry.get("sha256"):
            raise BundleError(f"bundle file {rel} does not match its sha256: it was altered")
    allowed = {BUNDLE_JSON, SIGNATURE_FILE, *listed}
    for dirpath, dirs, files in os.walk(bundle):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in (*dirs, *files):
            p = Path(dirpath) / name
            rel = p.relative_to(bundle).as_posix()
            if p.is_symlink():
                raise BundleError(f"bundle contains a symbolic link ({rel}); rebuild the bundle")
            if p.is_file() and rel not in allowed:
                raise BundleError(f"bundle contains an unlisted file ({rel}); it was altered")


def parse_public_key(text: str) -> bytes:
    """The 32 raw bytes of an Ed25519 public key given as hex, OpenSSH or PEM text."""
    text = text.strip()
    if _HEX64.match(text):
        return bytes.fromhex(text)
    try:
        if text.startswith("ssh-ed25519 "):
            blob = base64.b64decode(text.split()[1], validate=True)
            # string "ssh-ed25519" then string key, each with a 4-byte big-endian length
            n = int.from_bytes(blob[:4], "big")
            if blob[4 : 4 + n] == b"ssh-ed25519":
                m = int.from_bytes(blob[4 + n : 8 + n], "big")
                key = blob[8 + n : 8 + n + m]
                if len(key) == 32:
                    return key
        elif "-----BEGIN PUBLIC KEY-----" in text:
            body = text.split("-----BEGIN PUBLIC KEY-----")[1].split("-----END PUBLIC KEY-----")[0]
            der = base64.b64decode("".join(body.split()), validate=True)
            if len(der) == 44 and der.startswith(_SPKI_PREFIX):
                return der[12:]
    except (IndexError, ValueError, binascii.Error):
        pass
    raise BundleError(
        "not an Ed25519 public key: give the .pub file written by 'truce edge keygen' "
        "(OpenSSH 'ssh-ed25519 ...', PEM, or 64 hex digits)"
    )


def trusted_keys_from(paths: list[str] | None) -> list[bytes]:
    """Keys from ``--trusted-key`` files, else from ``$TRUCE_EDGE_TRUSTED_KEY`` (a file path)."""
    if not paths:
        env = os.environ.get(TRUSTED_KEY_ENV)
        paths = [env] if env else []
    keys = []
    for p in paths:
        try:
            keys.append(parse_public_key(Path(p).read_text(encoding="utf-8")))
        except OSError:
            raise BundleError(f"cannot read trusted key file {Path(p).name!r}") from None
        except UnicodeDecodeError:
            raise BundleError(f"trusted key file {Path(p).name!r} is not text") from None
    return keys


def check_signature(bundle: Path, trusted: list[bytes]) -> str | None:
    """Verify ``bundle.sig``; return the signer's key (hex) or ``None`` for an unsigned bundle."""
    sig_path = bundle / SIGNATURE_FILE
    if not sig_path.exists():
        if trusted:
            raise BundleError(
                "the bundle is not signed but this device requires a signature; "
                "export it with --sign-key"
            )
        return None
    try:
        sig = json.loads(sig_path.read_bytes()[:65536])
        public_key = bytes.fromhex(sig["public_key"])
        signature = bytes.fromhex(sig["signature"])
        algorithm = sig["algorithm"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BundleError(f"{SIGNATURE_FILE} is malformed; export the bundle again") from None
    if algorithm != "ed25519":
        raise BundleError(f"unsupported signature algorithm {algorithm!r}; use ed25519")
    if not ed25519.verify(public_key, (bundle / BUNDLE_JSON).read_bytes(), signature):
        raise BundleError("the bundle signature does not verify: the bundle was altered")
    if trusted and public_key not in trusted:
        raise BundleError("the bundle is signed by a key this device does not trust")
    return public_key.hex()


def verify_bundle(bundle: Path, trusted_keys: list[bytes] | None = None) -> dict[str, Any]:
    """Check signature and files of a bundle directory; return its ``bundle.json``."""
    bundle = Path(bundle)
    meta = read_meta(bundle)
    signer = check_signature(bundle, list(trusted_keys or []))
    check_files(bundle, meta)
    meta["_signed_by"] = signer
    return meta
