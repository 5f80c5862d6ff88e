"""`edgeguard demo`: the whole publisher-to-device flow on the bundled digits model."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from .cli import describe, describe_text
from .detect.cli import run_detector_demo
from .runtime import run_runtime_demo
from .keys import SigningKey, TrustStore, generate_private_key, load_recipient, write_private_key, write_public_key
from .seal import seal_model
from .unseal import inspect_file, verify_file


def bundled_model() -> Path:
    return Path(str(resources.files("edgeguard") / "data" / "digits_mlp.onnx"))


def bundled_samples() -> Path:
    return Path(str(resources.files("edgeguard") / "data" / "digits_samples.npz"))


def run_demo(say: Callable[[str], None]) -> None:
    """Runs keygen, seal, verify and inspect in a temporary folder, narrating each step."""
    with tempfile.TemporaryDirectory(prefix="edgeguard-demo-") as tmp:
        work = Path(tmp)
        say(f"edgeguard demo, working in {work}\n")

        publisher = generate_private_key("ed25519")
        write_private_key(work / "publisher.key", publisher)
        write_public_key(work / "publisher.pub", publisher.public_key())
        signer = SigningKey.load(work / "publisher.key")
        device = generate_private_key("x25519")
        write_private_key(work / "device.key", device)
        write_public_key(work / "device.pub", device.public_key())
        say(f"1. keygen   publisher signing key {signer.key_id} (ed25519), device key (x25519)")

        model = bundled_model()
        sealed = work / "digits.sealed"
        result = seal_model(model, sealed, signer=signer, recipients=[load_recipient(work / "device.pub")], name="digits-mlp", version=1, labels={"demo": "true"})
        say(f"2. seal     {model.name} ({model.stat().st_size:,} bytes) -> {sealed.name} ({result.size:,} bytes)")

        verified = verify_file(sealed, TrustStore.load([work / "publisher.pub"]))
        say(f"3. verify   signature by {verified.container.header.signer_key_id} and all {verified.container.header.chunk_count} chunk digest(s): OK")

        say("4. inspect  (public header, no key needed)")
        for line in describe_text(describe(inspect_file(sealed))).splitlines():
            say("             " + line)

        say("\n5. load     on the device: verify, decrypt into locked memory, run in onnxruntime (strict mode)")
        with np.load(bundled_samples()) as samples:
            pixels, labels = samples["pixels"], samples["labels"]
        run_runtime_demo(sealed, work / "device.key", work / "publisher.pub", model, say, inputs={"pixels": pixels})
        say(f"             true labels: {' '.join(str(int(v)) for v in labels)}")

    say("\n6. detect   a benign client and an extraction attacker against the same model")
    run_detector_demo(say)
