from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from edgeguard.keys import SigningKey, TrustStore, generate_private_key, key_id
from edgeguard.recipients.x25519 import X25519Identity, X25519Recipient
from helpers import Keys, new_keys


@pytest.fixture
def signer() -> SigningKey:
    return SigningKey.generate("ed25519")


@pytest.fixture
def trust(signer: SigningKey) -> TrustStore:
    return TrustStore([signer.verifying_key])


@pytest.fixture
def device() -> tuple[X25519Recipient, X25519Identity]:
    private = generate_private_key("x25519")
    kid = key_id(private.public_key())
    return X25519Recipient(private.public_key(), kid), X25519Identity(private, kid)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def keys() -> Keys:
    """Publisher and device keys shared by the sealed-format tests (see helpers.py)."""
    return new_keys()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """In CI nothing may be skipped: a skip there means a missing install step, so it fails."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


def _softhsm_module() -> str | None:
    found = glob.glob("/usr/lib/softhsm/libsofthsm2.so") + glob.glob("/usr/lib/*/softhsm/libsofthsm2.so")
    return found[0] if found else None


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real SoftHSM2 token with a non-extractable P-256 key (one per test session: the PKCS#11
    library is loaded once per process, so a second token directory would never be seen)."""
    module = _softhsm_module()
    try:
        import pkcs11
    except ImportError:
        module = None
    if module is None or shutil.which("softhsm2-util") is None:
        if os.geteuid() == 0:
            pytest.fail("SoftHSM2 or python-pkcs11 is missing: run tools/setup-test-system.sh (CI must not skip this)")
        pytest.skip("SoftHSM2 or python-pkcs11 is not installed and installing them needs root (tools/setup-test-system.sh)")
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    tmp = tmp_path_factory.mktemp("softhsm")
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old_conf = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", "edge-device", "--so-pin", "5678", "--pin", "1234"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        tok = pkcs11.lib(module).get_token(token_label="edge-device")
        with tok.open(rw=True, user_pin="1234") as session:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
            )
            public, private = params.generate_keypair(
                store=True, label="edgeguard-device", id=b"\x42",
                private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.DERIVE: True},
            )  # fmt: skip
            assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True
            public_key = serialization.load_der_public_key(encode_ec_public_key(public))
            with pytest.raises(pkcs11.exceptions.PKCS11Error):  # the token refuses to export it
                private[Attribute.VALUE]
            assert session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="edgeguard-device") is not None
        recipient_pem = tmp / "device.pub"
        recipient_pem.write_bytes(
            public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        yield {"module": module, "recipient": recipient_pem, "public_key": public_key, "tmp": tmp}
    finally:
        if old_conf is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old_conf
