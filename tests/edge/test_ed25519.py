"""The pure-Python Ed25519 verifier agrees with RFC 8032 and with ``cryptography``."""

from __future__ import annotations

import pytest

from edge.runner import ed25519

# RFC 8032, section 7.1, TEST 1 and TEST 2
VECTORS = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("pub", "msg", "sig"), VECTORS)
def test_rfc8032_vectors(pub: str, msg: str, sig: str) -> None:
    p, m, s = bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig)
    assert ed25519.verify_pure(p, m, s)
    assert not ed25519.verify_pure(p, m + b"x", s)
    bad = bytearray(s)
    bad[5] ^= 1
    assert not ed25519.verify_pure(p, m, bytes(bad))


def test_agrees_with_cryptography() -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    for i in range(5):
        key = Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        msg = bytes(range(i * 37 % 256)) * (i + 1)
        sig = key.sign(msg)
        assert ed25519.verify_pure(pub, msg, sig)
        assert ed25519.verify(pub, msg, sig)
        other = (
            Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        assert not ed25519.verify_pure(other, msg, sig)
        assert not ed25519.verify(other, msg, sig)


def test_malformed_inputs_are_false_not_errors() -> None:
    pub = bytes.fromhex(VECTORS[0][0])
    sig = bytes.fromhex(VECTORS[0][2])
    assert not ed25519.verify_pure(pub[:31], b"", sig)
    assert not ed25519.verify_pure(pub, b"", sig[:63])
    # s >= L must be refused (signature malleability)
    s = int.from_bytes(sig[32:], "little") + 2**252 + 27742317777372353535851937790883648493
    assert not ed25519.verify_pure(pub, b"", sig[:32] + s.to_bytes(32, "little"))
    assert not ed25519.verify_pure(b"\xff" * 32, b"", sig)
