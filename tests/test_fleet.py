"""A fleet on format version 2: one model sealed once, granted to 10,000 devices (each its own X25519
key pair), loaded by onnxruntime on a sample of them through the grant file and through a folder of
per-device grants, one device revoked and refused with RevokedError; version 1 files still open."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeguard import InferenceSession, RevokedError
from edgeguard.format_v2 import GRANT_SUFFIX
from edgeguard.grants import issue_device_grants, issue_grant, unlock, write_grant_folder
from edgeguard.keys import generate_private_key, key_id
from edgeguard.recipients.x25519 import X25519Identity, X25519Recipient
from edgeguard.revocation import make_revocation
from edgeguard.seal import seal_model
from helpers import Keys
from runtime_support import make_mlp

FLEET = 10_000
SAMPLE = 4
BYTES_PER_DEVICE = 256  # the goal for a multi-device grant


@pytest.mark.emulation_heavy  # 10,000 HPKE wraps: seconds natively, many minutes under qemu
def test_ten_thousand_devices_one_artifact(keys: Keys, tmp_path: Path) -> None:
    started = time.perf_counter()
    model = make_mlp(tmp_path / "mlp.onnx", widths=(16, 32, 8))
    issuer = generate_private_key("x25519")
    issuer_id = X25519Identity(issuer, key_id(issuer.public_key()))
    artifact = tmp_path / "model.sealed"
    seal_model(model, artifact, signer=keys.signer, recipients=[X25519Recipient(issuer.public_key(), issuer_id.key_id)],
               format_version=2, chunk_size=4096)  # fmt: skip

    devices = [generate_private_key("x25519") for _ in range(FLEET)]
    recipients = [X25519Recipient(d.public_key(), key_id(d.public_key())) for d in devices]
    assert len({r.key_id for r in recipients}) == FLEET

    unlocked = unlock(artifact, issuer_id, keys.trust)
    t0 = time.perf_counter()
    grant = issue_grant(unlocked, recipients, keys.signer)
    grant_s = time.perf_counter() - t0
    one = issue_grant(unlocked, recipients[:1], keys.signer)
    per_device = (len(grant) - len(one)) / (FLEET - 1)
    assert per_device <= BYTES_PER_DEVICE, per_device
    grant_path = tmp_path / "fleet.grant"
    grant_path.write_bytes(grant.to_bytes())

    sample = random.Random(7).sample(range(FLEET), SAMPLE)
    folder = write_grant_folder(issue_device_grants(unlocked, [recipients[i] for i in sample], keys.signer), tmp_path / "grants")
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for n, i in enumerate(sample):
        identity = X25519Identity(devices[i], recipients[i].key_id)
        source = grant_path if n % 2 == 0 else folder
        with InferenceSession(artifact, identity=identity, trust=keys.trust, grant=source, providers=["CPUExecutionProvider"]) as s:
            np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
    assert (folder / f"{recipients[sample[0]].key_id}{GRANT_SUFFIX}").is_file()

    # revoke one device: refused with the typed error, through either grant; the others still load
    revoked, kept = sample[0], sample[1]
    revocation = tmp_path / "revoked.list"
    revocation.write_bytes(make_revocation(keys.signer, 1, keys=[recipients[revoked].key_id]))
    for source in (grant_path, folder):
        with pytest.raises(RevokedError, match=recipients[revoked].key_id):
            InferenceSession(artifact, identity=X25519Identity(devices[revoked], recipients[revoked].key_id), trust=keys.trust,
                             grant=source, revocation=revocation, revocation_store=tmp_path / "serials.json")  # fmt: skip
    InferenceSession(artifact, identity=X25519Identity(devices[kept], recipients[kept].key_id), trust=keys.trust, grant=grant_path,
                     revocation=revocation, revocation_store=tmp_path / "serials.json").close()  # fmt: skip

    # version 1 still seals and opens beside it
    v1 = tmp_path / "v1.sealed"
    seal_model(model, v1, signer=keys.signer, recipients=[recipients[kept]])
    with InferenceSession(v1, identity=X25519Identity(devices[kept], recipients[kept].key_id), trust=keys.trust) as s:
        np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
    total = time.perf_counter() - started
    print(f"\nfleet: {FLEET} devices, grant {grant_s:.2f} s ({FLEET / grant_s:,.0f}/s), {per_device:.1f} B/device, test {total:.1f} s")
