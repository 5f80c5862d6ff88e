"""The reference decoder's own building blocks against published vectors (it rebuilds HKDF and
HPKE from primitives, so they are checked here independently of edgeguard)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import reference_decoder as ref


def test_reference_hkdf_matches_rfc5869_and_cryptography() -> None:
    # RFC 5869 test case 1 (SHA-256)
    ikm, salt, info = bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA))
    prk = ref._hkdf_extract(salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    assert ref._hkdf_expand(prk, info, 42).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    for n in (0, 1, 31, 32, 33, 64, 100):
        ikm, salt, info = os.urandom(n + 1), os.urandom(n), os.urandom(n)
        want = HKDF(hashes.SHA256(), 80, salt or None, info).derive(ikm)
        assert ref._hkdf_expand(ref._hkdf_extract(salt, ikm), info, 80) == want


def test_reference_hpke_opens_what_cryptography_seals() -> None:
    """Base mode, DHKEM(X25519) / HKDF-SHA256 / AES-256-GCM, any info and plaintext length."""
    for n in (0, 1, 32, 100):
        sk = x25519.X25519PrivateKey.generate()
        info, pt = os.urandom(n), os.urandom(n)
        sealed = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM).encrypt(pt, sk.public_key(), info=info)
        assert ref.hpke_open_base(0x0020, sk, sealed[:32], sealed[32:], info) == pt
