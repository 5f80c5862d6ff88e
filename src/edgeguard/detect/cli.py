"""Command-line pieces of the detector, wired into ``edgeguard`` by the main CLI module.

``add_profile_parser`` / ``run_profile``: ``edgeguard profile BENIGN.npy -o PROFILE``.
``add_seal_arguments`` / ``profile_section``: ``--detector-profile PROFILE`` for ``edgeguard seal``,
giving the bytes to store as the sealed payload's ``detector_profile`` section.
``run_detector_demo``: a benign client and a thief side by side, with the alert they raise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np

from ..errors import EdgeguardError, ProfileError
from .events import SIGNALS, Action
from .guard import Guard
from .policy import Policy
from .profile import Profile

# ---------------------------------------------------------------------------- profile


def add_profile_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``profile`` subcommand to an argparse subparsers object and returns its parser."""
    p = subparsers.add_parser(
        "profile",
        help="build a detector profile from benign calibration inputs",
        description="Fit the benign reference profile and calibrate the extraction detector's "
        "thresholds to a target false-positive rate per client.",
    )
    p.add_argument("benign", help=".npy file of benign inputs shaped (n, *input_shape), n >= 64")
    p.add_argument("-o", "--output", required=True, help="where to write the profile")
    p.add_argument("--target-fpr", type=float, default=0.01, help="benign clients that may ever alert (default 0.01)")
    p.add_argument("--model", help="ONNX model; its class scores on the inputs arm the low-margin signal")
    p.add_argument("--output-index", type=int, default=0, help="which model output holds class scores")
    p.add_argument("--domain", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="the model's declared input value range (default: the calibration range)")
    p.add_argument("--noise-sigma", type=float, default=0.05, help="benign sensor noise to tolerate")
    p.add_argument("--volume-budget", type=int, help="queries per client after which to alert")
    p.add_argument("--sketch-dim", type=int, default=32, help="dimension of the input sketch")
    p.add_argument("--seed", type=int, default=0, help="calibration randomness")
    return p


def run_profile(args: argparse.Namespace) -> int:
    """Runs ``edgeguard profile``; returns the exit status (0 ok, 1 failed), reporting on stderr."""
    try:
        benign = np.load(args.benign, allow_pickle=False)
    except (OSError, ValueError) as e:
        print(f"edgeguard profile: cannot read {args.benign}: {e}", file=sys.stderr)
        return 1
    if not np.issubdtype(benign.dtype, np.number):
        print(f"edgeguard profile: {args.benign} does not hold numbers", file=sys.stderr)
        return 1
    try:
        predict, input_name = (None, None) if args.model is None else _onnx_predict(args.model, args.output_index)
        profile = Profile.build(
            benign.astype(np.float32, copy=False), predict=predict, target_fpr=args.target_fpr,
            sketch_dim=args.sketch_dim, domain=tuple(args.domain) if args.domain else None,
            noise_sigma=args.noise_sigma, volume_budget=args.volume_budget, input_name=input_name,
            output_index=args.output_index, seed=args.seed,
        )
        profile.save(args.output)
    except (EdgeguardError, OSError) as e:
        print(f"edgeguard profile: {e}", file=sys.stderr)
        return 1
    armed = [n for n, t in zip(SIGNALS, profile.thresholds) if t != float("inf")]
    print(f"wrote {args.output}: {len(profile.to_bytes())} bytes, {profile.dim} features, "
          f"signals armed: {', '.join(armed)}")
    return 0


def _onnx_predict(path: str, output_index: int):
    """A batch predict function over an ONNX model (onnxruntime is imported only when asked)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable models
        raise ProfileError(f"cannot load model {path}: {e}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ProfileError("the model must have exactly one input to profile")
    name = inputs[0].name
    if not 0 <= output_index < len(session.get_outputs()):
        raise ProfileError(f"the model has no output {output_index}")
    fixed_batch = inputs[0].shape and inputs[0].shape[0] == 1

    def predict(x: np.ndarray) -> np.ndarray:
        if fixed_batch:
            return np.concatenate([session.run(None, {name: row[None]})[output_index] for row in x])
        return session.run(None, {name: x})[output_index]

    return predict, name


# ------------------------------------------------------------------------------- seal


def add_seal_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--detector-profile PROFILE`` to the ``seal`` subcommand's parser."""
    parser.add_argument("--detector-profile", metavar="PROFILE",
                        help="detector profile (from `edgeguard profile`) to store in the signed payload")


def profile_section(args: argparse.Namespace) -> bytes | None:
    """The validated, canonical bytes of ``--detector-profile`` for the ``detector_profile``
    section, or None when the option was not given.

    Raises:
        OSError: the file cannot be read.
        ProfileError: it is not a valid profile.
    """
    if getattr(args, "detector_profile", None) is None:
        return None
    return Profile.load(args.detector_profile).to_bytes()


# ------------------------------------------------------------------------------- demo

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
        return e / e.sum(axis=1, keepdims=True)


def run_detector_demo(print_fn: Callable[[str], None] = print, queries: int = 60) -> None:
    """Trains a tiny digit classifier in memory, profiles it, then serves a benign client and a
    perturbation-chain thief (random-perturbation extraction, as in PRADA's T-RND) side by side
    through one guard, printing each one's risk and the structured alert, with its MITRE ATLAS
    technique ids."""
    rng = np.random.default_rng(7)
    train_x, train_y = _glyph_digits(600, rng)
    victim = _SoftmaxVictim(train_x, train_y)
    calibration, _ = _glyph_digits(400, rng)
    profile = Profile.build(calibration, predict=victim, streams=32, stream_length=400, seed=1)
    alerts = []
    guard = Guard(profile, Policy.protective(), on_alert=alerts.append)
    print_fn(f"victim: softmax regression on 8x8 digits, accuracy {(victim(train_x).argmax(1) == train_y).mean():.2f}; "
             f"profile {len(profile.to_bytes())} bytes, {guard.state_bytes_per_client} bytes of state per client")

    benign, _ = _glyph_digits(queries, rng)
    seeds, _ = _glyph_digits(6, rng)
    thief = [np.clip(seeds[i % 6] + 0.03 * np.sign(rng.normal(size=64)), 0, 1).astype(np.float32)
             for i in range(queries)]
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
