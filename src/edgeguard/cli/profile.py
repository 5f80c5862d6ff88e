"""The detector's subcommand and seal option.

``add_profile_parser`` / ``run_profile``: ``edgeguard profile BENIGN.npy -o PROFILE``.
``add_seal_arguments`` / ``profile_section``: ``--detector-profile PROFILE`` for ``edgeguard seal``,
giving the bytes to store as the sealed payload's ``detector_profile`` section.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ProfileError
from ._common import check_outputs, emit

# ---------------------------------------------------------------------------- profile


def add_profile_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Adds the ``profile`` subcommand to an argparse subparsers object and returns its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
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
    p.add_argument("--domain-margin", type=float, default=0.25,
                   help="accepted values extend this fraction of the domain's width beyond it (default 0.25)")
    p.add_argument("--noise-sigma", type=float, default=0.02,
                   help="sensor noise of one capture, in input units (default 0.02): re-captures differing by "
                        "this much are not perturbation steps")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument("--noise-clip", dest="noise_clip", action="store_true", default=True,
                      help="noisy captures are clipped to the domain (default)")
    clip.add_argument("--no-noise-clip", dest="noise_clip", action="store_false",
                      help="noisy captures are not clipped: the accepted range widens by six sigmas")
    p.add_argument("--resubmit-rate", type=float, default=0.05, help="exact resubmits in calibration sessions")
    p.add_argument("--streams", type=int, default=200, help="calibration sessions replayed (default 200)")
    p.add_argument("--stream-length", type=int, default=1000, help="queries per calibration session (default 1000)")
    p.add_argument("--memory", type=int, default=320, help="near-duplicate memory entries per client (default 320)")
    p.add_argument("--fleet-memory", type=int, default=2048,
                   help="near-duplicate memory entries of the fleet view (default 2048; 0: no fleet view)")
    p.add_argument("--max-features", type=int, default=1024,
                   help="larger inputs are average-pooled to at most this many features (default 1024)")
    p.add_argument("--volume-budget", type=int, help="queries per client after which to alert")
    p.add_argument("--sketch-dim", type=int, default=32, help="dimension of the input sketch")
    p.add_argument("--seed", type=int, default=0, help="calibration randomness")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar on stderr (default: only on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is one of the inputs)")
    p.add_argument("--json", action="store_true", help="machine-readable output: one JSON document on stdout")
    return p


def run_profile(args: argparse.Namespace) -> int:
    """Runs ``edgeguard profile`` and returns 0.

    Raises:
        CliError: the output cannot or must not be written (checked before calibrating).
        ProfileError: unreadable or non-numeric inputs, an unusable model, or too few inputs.
        OSError: the profile cannot be written.
    """
    import numpy as np  # numpy and the detector load only when a profile is built (CLI start-up)

    from ..detect import SIGNALS, Profile

    check_outputs([args.output], [args.benign, args.model], force=args.force)
    try:
        benign = np.load(args.benign, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
        raise ProfileError(f"cannot read {args.benign}: {e}") from None
    if not isinstance(benign, np.ndarray):  # an .npz archive
        benign.close()
        raise ProfileError(f"{args.benign} is an .npz archive; profile takes one .npy array")
    if benign.dtype.kind not in "fiu":
        raise ProfileError(f"{args.benign} does not hold real numbers")
    profile = Profile.build(
        benign, predict=args.model, target_fpr=args.target_fpr, sketch_dim=args.sketch_dim,
        domain=tuple(args.domain) if args.domain else None, domain_margin=args.domain_margin,
        noise_sigma=args.noise_sigma, noise_clip=args.noise_clip, resubmit_rate=args.resubmit_rate,
        streams=args.streams, stream_length=args.stream_length, memory=args.memory,
        fleet_memory=args.fleet_memory, max_features=args.max_features, volume_budget=args.volume_budget,
        output_index=args.output_index, seed=args.seed, progress=args.progress,
    )
    profile.save(args.output, overwrite=args.force)
    size = len(profile.to_bytes())
    armed = [n for n, t in zip(SIGNALS, profile.thresholds, strict=True) if t != float("inf")]
    cal = profile.calibration
    emit(args, {"output": args.output, "bytes": size, "features": profile.dim, "pooled_features": profile.pooled_dim,
                "signals_armed": armed, "target_fpr": args.target_fpr, "seconds": cal.get("seconds"),
                "chain_blind": cal.get("chain_blind")},
         f"wrote {args.output}: {size} bytes, {profile.dim} features ({profile.pooled_dim} after pooling), "
         f"signals armed: {', '.join(armed)}; calibrated in {cal.get('seconds')} s"
         + ("; warning: the declared noise covers the whole chain radius, perturbation chains cannot be told "
            "from re-captures" if cal.get("chain_blind") else ""))
    return 0


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
    from ..detect import Profile

    return Profile.load(args.detector_profile).to_bytes()
