"""The detector's subcommand and seal option.

``add_profile_parser`` / ``run_profile``: ``edgeguard profile BENIGN.npy -o PROFILE``.
``add_seal_arguments`` / ``profile_section``: ``--detector-profile PROFILE`` for ``edgeguard seal``,
giving the bytes to store as the sealed payload's ``detector_profile`` section.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ProfileError

if TYPE_CHECKING:  # numpy and the detector load only when a profile is built or read (CLI start-up)
    import numpy as np
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
    p.add_argument("--noise-sigma", type=float, default=0.05, help="benign sensor noise to tolerate")
    p.add_argument("--volume-budget", type=int, help="queries per client after which to alert")
    p.add_argument("--sketch-dim", type=int, default=32, help="dimension of the input sketch")
    p.add_argument("--seed", type=int, default=0, help="calibration randomness")
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
    import numpy as np

    from ..detect import SIGNALS, Profile

    check_outputs([args.output], [args.benign, args.model], force=args.force)
    try:
        benign = np.load(args.benign, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
        raise ProfileError(f"cannot read {args.benign}: {e}") from None
    if not isinstance(benign, np.ndarray):  # an .npz archive
        benign.close()
        raise ProfileError(f"{args.benign} is an .npz archive; profile takes one .npy array")
    if not np.issubdtype(benign.dtype, np.number):
        raise ProfileError(f"{args.benign} does not hold numbers")
    predict, input_name = (None, None) if args.model is None else _onnx_predict(args.model, args.output_index)
    profile = Profile.build(
        benign.astype(np.float32, copy=False), predict=predict, target_fpr=args.target_fpr,
        sketch_dim=args.sketch_dim, domain=tuple(args.domain) if args.domain else None,
        noise_sigma=args.noise_sigma, volume_budget=args.volume_budget, input_name=input_name,
        output_index=args.output_index, seed=args.seed,
    )
    profile.save(args.output, overwrite=args.force)
    size = len(profile.to_bytes())
    armed = [n for n, t in zip(SIGNALS, profile.thresholds, strict=True) if t != float("inf")]
    emit(args, {"output": args.output, "bytes": size, "features": profile.dim, "signals_armed": armed,
                "target_fpr": args.target_fpr},
         f"wrote {args.output}: {size} bytes, {profile.dim} features, signals armed: {', '.join(armed)}")
    return 0


def _onnx_predict(path: str, output_index: int) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A batch predict function over an ONNX model (onnxruntime is imported only when asked)."""
    import numpy as np
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
        scores: np.ndarray = session.run(None, {name: x})[output_index]  # onnxruntime has no type stubs
        return scores

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
    from ..detect import Profile

    return Profile.load(args.detector_profile).to_bytes()
