"""`edgeguard demo`: the whole publisher-to-device flow on the bundled digits model, then the
extraction detector against a benign client and a thief."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..bench.workloads import sample_inputs
from ..detect import Action, AlertEvent, Guard, Policy, Profile
from ..keys import SigningKey, TrustStore, generate_private_key, write_private_key, write_public_key
from ..recipients import load_recipient
from ..runtime import InferenceSession
from ..seal import seal_model
from ..unseal import inspect_file, verify_file
from ._common import describe, describe_text


def bundled_model() -> Path:
    return Path(str(resources.files("edgeguard") / "data" / "digits_mlp.onnx"))


def bundled_samples() -> Path:
    return Path(str(resources.files("edgeguard") / "data" / "digits_samples.npz"))


def run_demo(say: Callable[[str], None]) -> dict[str, Any]:
    """Runs keygen, seal, verify and inspect in a temporary folder, narrating each step, then the
    detector demo. Returns a summary of each step (what ``edgeguard demo --json`` prints)."""
    with tempfile.TemporaryDirectory(prefix="edgeguard-demo-") as tmp:
        work = Path(tmp)
        say("edgeguard demo, working in a temporary folder (removed at the end)\n")

        publisher = generate_private_key("ed25519")
        write_private_key(work / "publisher.key", publisher)
        write_public_key(work / "publisher.pub", publisher.public_key())
        signer = SigningKey.load(work / "publisher.key")
        device = generate_private_key("x25519")
        write_private_key(work / "device.key", device)
        write_public_key(work / "device.pub", device.public_key())
        recipient = load_recipient(work / "device.pub")
        say(f"1. keygen   publisher signing key {signer.key_id} (ed25519), device key (x25519)")

        model = bundled_model()
        sealed = work / "digits.sealed"
        result = seal_model(model, sealed, signer=signer, recipients=[recipient], name="digits-mlp", version=1, labels={"demo": "true"})
        say(f"2. seal     {model.name} ({model.stat().st_size:,} bytes) -> {sealed.name} ({result.size:,} bytes)")

        verified = verify_file(sealed, TrustStore.load([work / "publisher.pub"]))
        say(f"3. verify   signature by {verified.container.header.signer_key_id} and all {verified.container.header.chunk_count} chunk digest(s): OK")

        say("4. inspect  (public header, no key needed)")
        header = describe(inspect_file(sealed))
        for line in describe_text(header).splitlines():
            say("             " + line)

        say("\n5. load     on the device: verify, decrypt into locked memory, run in onnxruntime (strict mode)")
        with np.load(bundled_samples()) as samples:
            pixels, labels = samples["pixels"], samples["labels"]
        diff = run_runtime_demo(sealed, work / "device.key", work / "publisher.pub", model, say, inputs={"pixels": pixels})
        say(f"             true labels: {' '.join(str(int(v)) for v in labels)}")

    say("\n6. detect   a benign client and an extraction attacker against the same model")
    alert = run_detector_demo(say)
    return {
        "keygen": {"publisher": {"type": "ed25519", "key_id": signer.key_id}, "device": {"type": "x25519", "key_id": recipient.key_id}},
        "seal": {"model": model.name, "model_bytes": model.stat().st_size, "sealed": sealed.name, "sealed_bytes": result.size},
        "verify": {"verified": True, "signer_key_id": verified.container.header.signer_key_id,
                   "chunks": verified.container.header.chunk_count},
        "inspect": header,
        "load": {"hygiene": "strict", "samples": len(pixels), "largest_difference": diff},
        "detect": None if alert is None else {"client": alert.client_id, "query": alert.query_index,
                                               "techniques": list(alert.techniques)},
    }


def _describe(row: np.ndarray) -> str:
    if row.ndim == 1 and row.size > 1 and np.issubdtype(row.dtype, np.floating):
        return f"class {int(np.argmax(row))} ({float(np.max(row)):.4f})"
    return np.array2string(row.ravel()[:4], precision=4)


def run_runtime_demo(
    sealed_path: str | os.PathLike[str],
    identity_path: str | os.PathLike[str],
    trust_path: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    print_fn: Any = print,
    inputs: Mapping[str, np.ndarray] | None = None,
    samples: int = 4,
) -> float:
    """Loads the sealed model in strict mode, runs `inputs` (or `samples` synthetic rows), and
    prints each prediction next to plain onnxruntime's on the original model. Returns the largest
    absolute difference.

    Raises:
        everything :class:`InferenceSession` raises; ValueError for inputs it cannot synthesise.
    """
    import onnxruntime as ort  # after edgeguard.runtime, which turns onnxruntime's telemetry off first

    with InferenceSession(sealed_path, identity=identity_path, trust=trust_path, hygiene="strict") as session:
        feeds = dict(inputs) if inputs is not None else sample_inputs(session.get_inputs(), samples)
        samples = len(next(iter(feeds.values())))
        ours = session.run(None, feeds)
        report = session.memory
    plain = ort.InferenceSession(os.fspath(model_path), providers=["CPUExecutionProvider"]).run(None, feeds)
    locked = "locked" if report.locked else f"not locked: {report.lock_error}"
    print_fn(f"strict load: {report.size} bytes of secure memory ({locked}), weights read in place")
    for i in range(samples):
        print_fn(f"  sample {i}: edgeguard {_describe(ours[0][i])}   onnxruntime {_describe(plain[0][i])}")
    diff = max(float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)) for a, b in zip(ours, plain, strict=True))
    print_fn(f"  largest difference over all outputs: {diff:.3g}")
    return diff


# 8x8 glyphs of the ten digits: the demo's victim learns these, so it needs no dataset.
_GLYPHS = (
    "..####..|.#....#.|.#....#.|.#....#.|.#....#.|.#....#.|.#....#.|..####..",
    "...##...|..###...|...##...|...##...|...##...|...##...|...##...|..####..",
    "..####..|.#....#.|......#.|.....#..|....#...|...#....|..#.....|.######.",
    "..####..|.#....#.|......#.|...###..|......#.|......#.|.#....#.|..####..",
    ".....#..|....##..|...#.#..|..#..#..|.######.|.....#..|.....#..|.....#..",
    ".######.|.#......|.#......|.#####..|......#.|......#.|.#....#.|..####..",
    "..####..|.#......|.#......|.#####..|.#....#.|.#....#.|.#....#.|..####..",
    ".######.|......#.|.....#..|....#...|...#....|...#....|...#....|...#....",
    "..####..|.#....#.|.#....#.|..####..|.#....#.|.#....#.|.#....#.|..####..",
    "..####..|.#....#.|.#....#.|..#####.|......#.|......#.|.....#..|..###...",
)


def _glyph_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    base = np.array([[c == "#" for c in g.replace("|", "")] for g in _GLYPHS], np.float32).reshape(10, 8, 8)
    y = rng.integers(10, size=n)
    x = np.empty((n, 64), np.float32)
    for i, label in enumerate(y):
        img = np.roll(base[label], rng.integers(-1, 2, size=2), axis=(0, 1)) * rng.uniform(0.6, 1.0)
        x[i] = np.clip(img.ravel() + rng.normal(0, 0.08, 64), 0, 1)
    return x, y


class _SoftmaxVictim:
    """A tiny softmax-regression classifier trained in numpy: the model the demo protects."""

    def __init__(self, x: np.ndarray, y: np.ndarray, steps: int = 200, lr: float = 0.5):
        self.w = np.zeros((64, 10), np.float32)
        self.b = np.zeros(10, np.float32)
        onehot = np.eye(10, dtype=np.float32)[y]
        for _ in range(steps):
            grad = (self(x) - onehot) / len(x)
            self.w -= lr * x.T @ grad
            self.b -= lr * grad.sum(axis=0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float32).reshape(-1, 64) @ self.w + self.b
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probabilities: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return probabilities


def run_detector_demo(print_fn: Callable[[str], None] = print, queries: int = 60) -> Any:
    """Trains a tiny digit classifier in memory, profiles it, then serves a benign client and a
    perturbation-chain thief (random-perturbation extraction, as in PRADA's T-RND) side by side
    through one guard, printing each one's risk and the structured alert, with its MITRE ATLAS
    technique ids. Returns the first alert event, or None."""
    rng = np.random.default_rng(7)
    train_x, train_y = _glyph_digits(600, rng)
    victim = _SoftmaxVictim(train_x, train_y)
    calibration, _ = _glyph_digits(400, rng)
    profile = Profile.build(calibration, predict=victim, streams=32, stream_length=400, noise_sigma=0.01, seed=1)
    alerts: list[AlertEvent] = []
    guard = Guard(profile, Policy.protective(), on_alert=alerts.append, fleet=False)  # two clients: no fleet view
    print_fn(f"victim: softmax regression on 8x8 digits, accuracy {(victim(train_x).argmax(1) == train_y).mean():.2f}; "
             f"profile {len(profile.to_bytes())} bytes, {guard.state_bytes_per_client} bytes of state per client")

    benign, _ = _glyph_digits(queries, rng)
    seeds, _ = _glyph_digits(6, rng)
    thief, walk = [], list(seeds)  # each query a random sign step from the last one of its seed
    for i in range(queries):
        walk[i % 6] = np.clip(walk[i % 6] + 0.05 * np.sign(rng.normal(size=64)), 0, 1).astype(np.float32)
        thief.append(walk[i % 6])
    print_fn(f"{'query':>5}  {'benign risk':>11} {'action':<8}  {'thief risk':>10} {'action':<8}")
    shown_alert = False
    for q in range(queries):
        rows = []
        for client, x in (("benign-app", benign[q]), ("thief", thief[q])):
            scores = victim(x)
            d = guard.observe(client, x[None], [scores])
            if d.action != Action.BLOCK:
                guard.apply(d, [scores], sleep=False)
            rows.append(d)
        if q < 3 or q % 10 == 9 or (alerts and not shown_alert):
            print_fn(f"{q + 1:>5}  {rows[0].risk:>11.2f} {rows[0].action.name:<8}  "
                     f"{rows[1].risk:>10.2f} {rows[1].action.name:<8}")
        if alerts and not shown_alert:
            shown_alert = True
            event = alerts[0]
            print_fn(f"ALERT on client {event.client_id!r} at query {event.query_index}: "
                     + "; ".join(f"{r.description} ({r.value:g} vs threshold {r.threshold:g})" for r in event.reasons
                                 if r.ratio >= 1))
            print_fn("MITRE ATLAS: " + ", ".join(event.techniques))
            print_fn(json.dumps(event.to_dict(), indent=2))
    if not alerts:
        print_fn("no alert was raised")
        return None
    return alerts[0]
