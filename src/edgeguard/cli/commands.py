"""The model subcommands: keygen, seal, verify, inspect and unseal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import EdgeguardError
from ._common import (
    EXIT_FORMAT,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Progress,
    describe,
    describe_header,
    describe_text,
    emit,
    read_passphrase,
)


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..keys import generate_private_key, key_id, write_private_key, write_public_key

    out = Path(args.output)
    pub = Path(args.public) if args.public else out.with_name(out.name + ".pub")
    for p in (out, pub):
        if p.exists():
            raise CliError(f"{p} already exists", hint="keygen never overwrites a key; choose another name")
    private = generate_private_key(args.type)
    write_private_key(out, private)
    try:
        write_public_key(pub, private.public_key())
    except BaseException:
        out.unlink()  # a failed command leaves no output file, least of all a lone private key
        raise
    role = "device (recipient)" if args.type == "x25519" else "signing or device" if args.type == "p256" else "signing"
    kid = key_id(private.public_key())
    emit(
        args,
        {"type": args.type, "key_id": kid, "private_key": str(out), "public_key": str(pub)},
        f"wrote {args.type} {role} key {kid}\n  private: {out} (mode 0600)\n  public:  {pub}",
    )
    return EXIT_OK


def _recipients(args: argparse.Namespace) -> list[Any]:
    from ..recipients import load_recipient
    from ..recipients.scrypt import PassphraseRecipient

    if args.passphrase and args.recipient:
        raise CliError("--passphrase cannot be combined with --recipient", hint="a passphrase-sealed file must have no other recipient (as in age)", code=EXIT_USAGE)
    if args.passphrase:
        return [PassphraseRecipient(read_passphrase(confirm=True))]
    if not args.recipient:
        raise CliError("no recipient given", hint="add --recipient DEVICE.pub (repeatable) or --passphrase", code=EXIT_USAGE)
    return [load_recipient(p) for p in args.recipient]


def cmd_seal(args: argparse.Namespace) -> int:
    from .. import kinds
    from ..keys import SigningKey
    from ..seal import seal_model

    model = Path(args.model)
    if not model.is_file():
        raise CliError(f"{model} is not a file")
    signer = SigningKey.load(args.sign)
    recipients = _recipients(args)
    from .profile import profile_section

    if args.optimize:
        if (args.kind or kinds.detect(model)) != "onnx":
            raise CliError("--optimize applies to ONNX models only", code=EXIT_USAGE)
        return _seal_optimized(args, model)
    if args.cipher == "auto":
        args.cipher = _auto_cipher(args.target)
    elif args.target:
        raise CliError("--target only applies with --cipher auto", code=EXIT_USAGE)
    progress = Progress("sealing", model.stat().st_size)
    try:
        result = seal_model(
            model, args.output, signer=signer, recipients=recipients, name=args.name, version=args.model_version,
            not_before=args.not_before, not_after=args.not_after, labels=dict(args.label), kind=args.kind,
            detector_profile=profile_section(args), cipher=args.cipher, chunk_size=args.chunk_size, threads=args.threads, overwrite=args.force,
            progress=progress.callback(),
        )  # fmt: skip
    except ModuleNotFoundError as exc:
        if exc.name != "onnx":
            raise
        raise CliError("sealing an ONNX model needs the onnx package", hint="pip install 'edgeguard[seal]'") from None
    except FileExistsError:
        raise CliError(f"{args.output} already exists", hint="pass --force to replace it") from None
    info = describe_header(result.header, result.size)
    emit(args, {"output": str(result.path), **info}, f"sealed {model} -> {result.path} ({result.size:,} bytes)\n" + describe_text(info))
    return EXIT_OK


def _auto_cipher(target: str | None) -> str:
    """The AEAD for the target: from its bench results or fingerprint, else from this machine."""
    from ..bench.fingerprint import choose_cipher

    if target is None:
        cipher = choose_cipher(None)
        print(f"edgeguard: --cipher auto picked {cipher} for this machine (pass --target for the device's own results)", file=sys.stderr)
        return cipher
    try:
        doc = json.loads(Path(target).read_text())
        return choose_cipher(doc)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CliError(f"{target} is not `edgeguard bench` results or a fingerprint ({type(exc).__name__})", code=EXIT_USAGE) from None


def _seal_optimized(args: argparse.Namespace, model: Path) -> int:
    """Seals onnxruntime's offline-optimized graph, so strict mode can skip on-device optimization
    (which would leave rewritten weights in onnxruntime's heap). The optimized copy lives in a
    private temporary folder and is removed right after sealing."""
    import tempfile

    from ..optimize import optimize_onnx

    with tempfile.TemporaryDirectory(prefix="edgeguard-optimize-") as tmp:
        optimized = Path(tmp) / model.name
        try:
            optimize_onnx(model, optimized)
        except (OSError, EdgeguardError):
            raise
        except Exception as exc:  # onnxruntime's errors have no common public base class
            raise CliError(f"onnxruntime could not optimize {model}: {type(exc).__name__}", code=EXIT_FORMAT) from None
        args.optimize = False
        args.name = args.name or model.stem
        args.model = str(optimized)
        return cmd_seal(args)


def cmd_verify(args: argparse.Namespace) -> int:
    from ..keys import TrustStore
    from ..unseal import verify_file

    verified = verify_file(args.sealed, TrustStore.load(args.trust), threads=args.threads)
    info = describe(verified.container)
    emit(args, {"verified": True, **info}, f"OK: {args.sealed} is signed by trusted key {info['signer']['key_id']} and every chunk verifies\n" + describe_text(info))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..unseal import inspect_file

    info = describe(inspect_file(args.sealed))
    emit(args, {"verified": False, **info}, describe_text(info) + "\n(header only: nothing has been verified; use `edgeguard verify`)")
    return EXIT_OK


def cmd_unseal(args: argparse.Namespace) -> int:
    from ..keys import TrustStore
    from ..recipients import resolve_identities
    from ..unseal import unseal_file

    if bool(args.identity) == bool(args.passphrase):
        raise CliError("give exactly one of --identity KEY or --passphrase", code=EXIT_USAGE)
    if Path(args.output).exists():
        raise CliError(f"{args.output} already exists", hint="unseal never overwrites; choose another output path")
    trust = TrustStore.load(args.trust)
    identities = resolve_identities(args.identity, read_passphrase(confirm=False) if args.passphrase else None)
    size = Path(args.sealed).stat().st_size
    opened = unseal_file(args.sealed, args.output, identities, trust, threads=args.threads, progress=Progress("opening", size).callback())
    info = describe(opened.container)
    emit(args, {"output": args.output, **info}, f"unsealed {args.sealed} -> {args.output}\n" + describe_text(info))
    return EXIT_OK
