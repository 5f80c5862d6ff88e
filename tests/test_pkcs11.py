"""Token identities: the RFC 9180 receiver against the RFC's vectors and cryptography's HPKE, and
end-to-end loads from a real SoftHSM2 token whose private key never leaves it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

import edgeguard
from edgeguard.errors import KeyFileError, NotARecipientError
from edgeguard.keys import key_id
from edgeguard.recipients import load_recipient, wrap_context
from edgeguard.recipients._hpke import AEAD_AES_128_GCM, hpke_p256_open
from edgeguard.recipients.pkcs11 import Pkcs11Identity, TokenError, parse_pkcs11_uri
from edgeguard.seal import seal_model
from runtime_support import make_keys, make_mlp

pytestmark = pytest.mark.native_process  # the token module is a host (x86_64) library

h = bytes.fromhex

# RFC 9180 Appendix A.3.1: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode, seq 0.
# (The RFC has no P-256/SHA-256/AES-256-GCM vector; the KEM and key schedule are the same code.)
A31 = {
    "info": h("4f6465206f6e2061204772656369616e2055726e"),
    "skRm": h("f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2"),
    "pkRm": h(
        "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a826a779b4cf969b8a0e539c7f62fb3d30ad6aa"
        "8f80e30f1d128aafd68a2ce72ea0"
    ),
    "enc": h(
        "04a92719c6195d5085104f469a8b9814d5838ff72b60501e2c4466e5e67b325ac98536d7b61a1af4b78e5b7f951c0900be863c"
        "403ce65c9bfcb9382657222d18c4"
    ),
    "aad": h("436f756e742d30"),
    "ct": h("5ad590bb8baa577f8619db35a36311226a896e7342a6d836d8b7bcd2f20b6c7f9076ac232e3ab2523f39513434"),
    "pt": h("4265617574792069732074727574682c20747275746820626561757479"),
}


def _software_dh(private_key: ec.EllipticCurvePrivateKey) -> Any:
    return lambda enc: private_key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc))


def _point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def test_receiver_matches_rfc9180_test_vector() -> None:
    sk = ec.derive_private_key(int.from_bytes(A31["skRm"], "big"), ec.SECP256R1())
    assert _point(sk.public_key()) == A31["pkRm"]
    wrapped = A31["enc"] + A31["ct"]
    opened = hpke_p256_open(wrapped, A31["pkRm"], _software_dh(sk), A31["info"], A31["aad"], AEAD_AES_128_GCM)
    assert opened == A31["pt"]
    with pytest.raises(InvalidTag):
        hpke_p256_open(wrapped, A31["pkRm"], _software_dh(sk), A31["info"] + b"!", A31["aad"], AEAD_AES_128_GCM)


def test_receiver_opens_what_cryptography_suite_encrypts() -> None:
    sk = ec.generate_private_key(ec.SECP256R1())
    suite = Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_256_GCM)  # what `edgeguard seal` uses for hpke-p256
    for _ in range(3):
        dek, salt = os.urandom(32), os.urandom(32)
        wrapped = suite.encrypt(dek, sk.public_key(), info=wrap_context(salt))
        assert hpke_p256_open(wrapped, _point(sk.public_key()), _software_dh(sk), wrap_context(salt)) == dek
        with pytest.raises(InvalidTag):
            hpke_p256_open(wrapped, _point(sk.public_key()), _software_dh(sk), wrap_context(os.urandom(32)))


def test_uri_parsing() -> None:
    path, query = parse_pkcs11_uri("pkcs11:token=My%20Device;object=edge;id=%01%02?module-path=/x.so&pin-value=12%3B4")
    assert path == {"token": b"My Device", "object": b"edge", "id": b"\x01\x02"}
    assert query == {"module-path": "/x.so", "pin-value": "12;4"}
    for bad in ("file:/x", "pkcs11:token=a;bogus=1", "pkcs11:token=a;token=b", "pkcs11:object=a;type=public", "pkcs11:token"):
        with pytest.raises(ValueError):
            parse_pkcs11_uri(bad)


def test_sealed_model_loads_with_the_token_key(token: dict[str, Any], tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    model = make_mlp(tmp_path / "m.onnx", widths=(16, 64, 3))
    sealed = tmp_path / "m.sealed"
    # Sealed to the token's public key and to an ordinary device key: the token picks its own stanza.
    seal_model(model, sealed, signer=keys.signer, recipients=[load_recipient(keys.recipient_path), load_recipient(token["recipient"])])
    uri = f"pkcs11:token=edge-device;object=edgeguard-device?module-path={token['module']}&pin-value=1234"
    x = np.ones((2, 16), np.float32)
    with edgeguard.InferenceSession(sealed, identity=uri, trust=keys.trust) as by_token:
        with edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust) as by_file:
            np.testing.assert_array_equal(by_token.run(None, {"x": x})[0], by_file.run(None, {"x": x})[0])
    identity = Pkcs11Identity("pkcs11:token=edge-device;id=%42", pin="1234", module_path=token["module"])
    assert identity.key_id == key_id(token["public_key"])
    assert "1234" not in repr(identity) and "edge-device" in repr(identity)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(identity)
    other = tmp_path / "other.sealed"
    seal_model(model, other, signer=keys.signer, recipients=[load_recipient(keys.recipient_path)])
    with pytest.raises(NotARecipientError):
        edgeguard.InferenceSession(other, identity=identity, trust=keys.trust)


def test_token_errors_are_typed_and_hide_the_pin(token: dict[str, Any], tmp_path: Path) -> None:
    module = token["module"]
    pin_file = tmp_path / "pin"
    pin_file.write_text("1234\n")
    assert Pkcs11Identity(f"pkcs11:token=edge-device;object=edgeguard-device?pin-source=file:{pin_file}", module_path=module).key_id
    with pytest.raises(TokenError, match="PinIncorrect") as info:
        Pkcs11Identity("pkcs11:token=edge-device;object=edgeguard-device?pin-value=9999", module_path=module)
    assert "9999" not in str(info.value)
    with pytest.raises(TokenError, match="NoSuchToken"):
        Pkcs11Identity("pkcs11:token=absent;object=edgeguard-device", pin="1234", module_path=module)
    with pytest.raises(TokenError, match="0 matching public keys"):
        Pkcs11Identity("pkcs11:token=edge-device;object=nothing", pin="1234", module_path=module)
    with pytest.raises(TokenError, match="cannot load the PKCS#11 module"):
        Pkcs11Identity("pkcs11:token=edge-device;object=x", pin="1234", module_path=str(tmp_path / "missing.so"))
    assert issubclass(TokenError, KeyFileError)


def test_cli_unseal_takes_a_token_uri(token: dict[str, Any], tmp_path: Path) -> None:
    from edgeguard.cli import EXIT_KEY, EXIT_OK, main

    keys = make_keys(tmp_path)
    model = make_mlp(tmp_path / "m.onnx", widths=(16, 8, 3))
    sealed = tmp_path / "m.sealed"
    seal_model(model, sealed, signer=keys.signer, recipients=[load_recipient(token["recipient"])])
    uri = f"pkcs11:token=edge-device;object=edgeguard-device?module-path={token['module']}&pin-value=1234"
    out = tmp_path / "back.onnx"
    assert main(["unseal", str(sealed), "-o", str(out), "--identity", uri, "--trust", str(keys.trust_path)]) == EXIT_OK
    import onnx

    assert onnx.load(str(out)).graph.node  # the original model, weights embedded again
    wrong_pin = uri.replace("pin-value=1234", "pin-value=0000")
    assert main(["unseal", str(sealed), "-o", str(tmp_path / "no.onnx"), "--identity", wrong_pin, "--trust", str(keys.trust_path)]) == EXIT_KEY
    assert not (tmp_path / "no.onnx").exists()


def test_a_version_2_grant_opens_with_the_token_key(token: dict[str, Any], tmp_path: Path) -> None:
    """A fleet device whose P-256 key never leaves its token opens a version 2 artifact through a
    grant (the grant's wrap context reaches the token-side HPKE open)."""
    from edgeguard.grants import issue_grant, unlock

    keys = make_keys(tmp_path)
    model = make_mlp(tmp_path / "m.onnx", widths=(16, 8, 3))
    sealed = tmp_path / "m.sealed"
    seal_model(model, sealed, signer=keys.signer, recipients=[load_recipient(keys.recipient_path)], format_version=2)
    grant = issue_grant(unlock(sealed, keys.identity_path, keys.trust), [load_recipient(token["recipient"])], keys.signer)
    uri = f"pkcs11:token=edge-device;object=edgeguard-device?module-path={token['module']}&pin-value=1234"
    x = np.ones((2, 16), np.float32)
    with edgeguard.InferenceSession(sealed, identity=uri, trust=keys.trust, grant=grant.to_bytes()) as by_token:
        with edgeguard.InferenceSession(sealed, identity=keys.identity_path, trust=keys.trust) as by_file:
            np.testing.assert_array_equal(by_token.run(None, {"x": x})[0], by_file.run(None, {"x": x})[0])
    with pytest.raises(NotARecipientError):  # the embedded grant addresses the file key only
        edgeguard.InferenceSession(sealed, identity=uri, trust=keys.trust)
