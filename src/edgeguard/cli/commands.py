"""The model subcommands: keygen, seal, verify, inspect and unseal."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import FormatError, LoadRefusedError
from ..format import MAX_LABELS, MAX_RECIPIENTS, Header, ModelInfo
from ._common import (
    EXIT_ERROR,
    EXIT_FORMAT,
    EXIT_OK,
    EXIT_POLICY,
    EXIT_USAGE,
    CliError,
    Progress,
    _iso,
    check_outputs,
    describe,
    describe_header,
    describe_text,
    emit,
    load_keys,
    read_passphrase,
    warn,
)


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..keys import generate_private_key, key_id, write_private_key, write_public_key

    out = Path(args.output)
    pub = Path(args.public) if args.public else out.with_name(out.name + ".pub")
    check_outputs([out, pub], [], force=False, exists_hint="keygen never overwrites a key; choose another name")
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
    v2 = getattr(args, "format_version", 1) == 2
    if args.passphrase and v2:
        raise CliError("--passphrase cannot be combined with --format-version 2", hint="version 2 grants address device keys only", code=EXIT_USAGE)
    if args.passphrase:
        return [PassphraseRecipient(read_passphrase(confirm=True))]
    if not args.recipient:
        raise CliError("no recipient given", hint="add --recipient DEVICE.pub (repeatable) or --passphrase", code=EXIT_USAGE)
    if len(args.recipient) > MAX_RECIPIENTS and not v2:
        raise CliError(f"at most {MAX_RECIPIENTS} --recipient keys fit in a sealed file, got {len(args.recipient)}", code=EXIT_USAGE)
    recipients = [load_keys(load_recipient, p, "--recipient", "public", "a device's") for p in args.recipient]
    first: dict[str, str] = {}
    for path, r in zip(args.recipient, recipients, strict=True):
        if r.key_id in first:
            raise CliError(f"--recipient {first[r.key_id]} and --recipient {path} are the same key ({r.key_id})", code=EXIT_USAGE)
        first[r.key_id] = path
    return recipients


def _check_seal_options(args: argparse.Namespace) -> None:
    """What argparse cannot check one option at a time, against the format's limits."""
    if len(args.label) > MAX_LABELS:
        raise CliError(f"at most {MAX_LABELS} --label options fit in a sealed file, got {len(args.label)}", code=EXIT_USAGE)
    keys = [k for k, _ in args.label]
    twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if twice is not None:
        raise CliError(f"--label {twice}=... is given twice", code=EXIT_USAGE)
    if args.not_before is not None and args.not_after is not None and args.not_before >= args.not_after:
        raise CliError(f"--not-before ({_iso(args.not_before)}) must be earlier than --not-after ({_iso(args.not_after)})", code=EXIT_USAGE)
    if args.not_after is not None and args.not_after < time.time():
        warn(f"--not-after {_iso(args.not_after)} is in the past: devices will refuse this model as expired")
    if args.target and args.cipher != "auto":
        raise CliError("--target only applies with --cipher auto", code=EXIT_USAGE)


def cmd_seal(args: argparse.Namespace) -> int:
    from .. import kinds
    from ..keys import SigningKey
    from ..seal import seal_model
    from ..unseal import inspect_file
    from .bom import bom_inputs, bom_section
    from .profile import profile_section

    model = Path(args.model)
    _check_seal_options(args)
    if not model.is_file():
        raise CliError(f"{model} is not a file")
    kind = args.kind or kinds.detect(model)
    if args.optimize and kind != "onnx":
        raise CliError("--optimize applies to ONNX models only", code=EXIT_USAGE)
    check_outputs([args.output], [model, args.sign, *args.recipient, args.target, args.detector_profile, *bom_inputs(args)], force=args.force)
    if kind == "onnx" and model.stat().st_size == 0:
        raise CliError(f"{model} is empty: not an ONNX model", code=EXIT_FORMAT)
    signer = load_keys(SigningKey.load, args.sign, "--sign", "private", "the publisher's")
    recipients = _recipients(args)
    cipher = _auto_cipher(args.target) if args.cipher == "auto" else args.cipher
    section = profile_section(args)
    ml_bom = bom_section(args, model)
    with tempfile.TemporaryDirectory(prefix="edgeguard-optimize-") if args.optimize else contextlib.nullcontext("") as tmp:
        source = _optimized(model, Path(tmp)) if args.optimize else model
        progress = Progress("sealing", source.stat().st_size)
        try:
            result = seal_model(
                source, args.output, signer=signer, recipients=recipients, name=args.name or model.stem,
                version=args.model_version, not_before=args.not_before, not_after=args.not_after, labels=dict(args.label),
                kind=kind, detector_profile=section, cipher=cipher, chunk_size=args.chunk_size, threads=args.threads,
                overwrite=args.force, progress=progress.callback(), format_version=args.format_version, ml_bom=ml_bom,
            )  # fmt: skip
        except ModuleNotFoundError as exc:
            if exc.name != "onnx":
                raise
            raise CliError("sealing an ONNX model needs the onnx package", hint="pip install 'edgeguard[seal]'") from None
        except FileExistsError:  # it appeared while sealing
            raise CliError(f"{args.output} already exists", hint="pass --force to replace it") from None
        except (FormatError, OSError) as exc:
            if source is model or tmp not in str(exc):
                raise
            # about the optimized copy, whose temporary path means nothing to the user
            raise CliError(str(exc).replace(str(source), f"the optimized {model}"),
                           code=EXIT_FORMAT if isinstance(exc, FormatError) else EXIT_ERROR) from None
    info = describe(inspect_file(result.path)) if args.format_version == 2 else describe_header(result.header, result.size)
    coverage = result.coverage
    text = f"sealed {model} -> {result.path} ({result.size:,} bytes)\n" + describe_text(info)
    if coverage is not None:
        text += f"\ncoverage    {coverage}"
    emit(args, {"output": str(result.path), **info, "coverage": None if coverage is None else coverage.to_json()}, text)
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


def _optimized(model: Path, tmp: Path) -> Path:
    """onnxruntime's offline-optimized graph of `model`, in the private temporary folder `tmp`
    (removed right after sealing), so strict mode can skip on-device optimization (which would
    leave rewritten weights in onnxruntime's heap). Errors never name the temporary copy."""
    from ..optimize import optimize_onnx

    optimized = tmp / model.name
    try:
        optimize_onnx(model, optimized)
    except OSError as exc:
        raise CliError(f"cannot optimize {model}: {exc.strerror or type(exc).__name__}") from None
    except Exception as exc:  # onnxruntime's errors have no common public base class
        raise CliError(f"onnxruntime could not optimize {model}: {type(exc).__name__}", code=EXIT_FORMAT) from None
    return optimized


def _check_window(args: argparse.Namespace, model: ModelInfo) -> None:
    """Refuses (exit 6) a verified file outside its validity window, unless --ignore-validity."""
    from ..freshness import check_validity

    try:
        check_validity(model, time.time())
    except LoadRefusedError as exc:
        window = f"valid from {_iso(model.not_before) or '-'} until {_iso(model.not_after) or '-'}"
        if not args.ignore_validity:
            raise CliError(f"{args.sealed}: {exc} ({window})", code=EXIT_POLICY,
                           hint="its signature and every chunk verify; pass --ignore-validity to accept it anyway") from None
        warn(f"{exc} ({window}); accepted because of --ignore-validity")


def cmd_verify(args: argparse.Namespace) -> int:
    from ..keys import TrustStore
    from ..unseal import verify_file

    trust = load_keys(TrustStore.load, args.trust, "--trust", "public", "the publisher's")
    verified = verify_file(args.sealed, trust, threads=args.threads)
    _check_window(args, verified.container.header.model)
    info = describe(verified.container)
    emit(args, {"verified": True, **info}, f"OK: {args.sealed} is signed by trusted key {info['signer']['key_id']} and every chunk verifies\n" + describe_text(info))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """The public header; with a device key (and the publisher's), also the protected coverage,
    which lies inside the encryption."""
    from ..unseal import inspect_file

    info = describe(inspect_file(args.sealed))
    if not (args.identity or args.passphrase):
        if args.trust:
            raise CliError("--trust applies with --identity or --passphrase (to measure coverage)", code=EXIT_USAGE)
        emit(args, {"verified": False, **info}, describe_text(info) + "\n(header only: nothing has been verified; use `edgeguard verify`)")
        return EXIT_OK
    if not args.trust:
        raise CliError("--identity/--passphrase needs --trust PUB: coverage is measured on the verified, decrypted payload", code=EXIT_USAGE)
    from ..coverage import sealed_coverage
    from ..keys import TrustStore
    from ..recipients import PKCS11_SCHEME, load_identity

    trust = load_keys(TrustStore.load, args.trust, "--trust", "public", "the publisher's")
    keys = [p if p.startswith(PKCS11_SCHEME) else load_keys(load_identity, p, "--identity", "private", "a device's") for p in args.identity]
    coverage = sealed_coverage(args.sealed, identity=keys or None, trust=trust, passphrase=read_passphrase(confirm=False) if args.passphrase else None,
                               threads=args.threads)  # fmt: skip
    text = describe_text(info) + "\ncoverage    " + ("not an ONNX payload" if coverage is None else str(coverage))
    emit(args, {"verified": True, **info, "coverage": None if coverage is None else coverage.to_json()},
         text + "\n(verified: the signature and every chunk; decrypted in locked memory to measure coverage, then wiped)")
    return EXIT_OK


def cmd_unseal(args: argparse.Namespace) -> int:
    from ..keys import TrustStore
    from ..recipients import PKCS11_SCHEME, load_identity, resolve_identities

    if bool(args.identity) == bool(args.passphrase):
        raise CliError("give exactly one of --identity KEY or --passphrase", code=EXIT_USAGE)
    check_outputs([args.output], [args.sealed, *args.identity, *args.trust, args.grant, args.revocation], force=args.force)
    trust = load_keys(TrustStore.load, args.trust, "--trust", "public", "the publisher's")
    keys = [p if p.startswith(PKCS11_SCHEME) else load_keys(load_identity, p, "--identity", "private", "a device's") for p in args.identity]
    identities = resolve_identities(keys, read_passphrase(confirm=False) if args.passphrase else None)
    from .grants import unseal_admission

    opened = _unseal(args, identities, trust, unseal_admission(args, trust))
    info = describe(opened.container)
    emit(args, {"output": args.output, **info}, f"unsealed {args.sealed} -> {args.output}\n" + describe_text(info))
    return EXIT_OK


def _unseal(args: argparse.Namespace, identities: list[Any], trust: Any, admit_grant: Any = None) -> Any:
    """unseal_file never replaces a file. With --force it writes into a private folder beside
    OUTPUT, and its files (the model, and an ONNX model's external data above 2 GB) replace the
    old ones only once complete: a failure leaves the old output as it was."""
    from ..unseal import unseal_file

    out = Path(args.output)
    progress = Progress("opening", Path(args.sealed).stat().st_size).callback()
    # The window is checked on the verified header, before any key is unwrapped: nothing is written
    # for a file outside it.
    def admit(header: Header) -> None:
        _check_window(args, header.model)

    if not args.force:
        return unseal_file(args.sealed, out, identities, trust, threads=args.threads, progress=progress, admit=admit,
                           grant=args.grant, admit_grant=admit_grant)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=".edgeguard-unseal-", dir=out.parent) as tmp:
        try:
            opened = unseal_file(args.sealed, Path(tmp) / out.name, identities, trust, threads=args.threads, progress=progress, admit=admit,
                                 grant=args.grant, admit_grant=admit_grant)  # fmt: skip
            for name in os.listdir(tmp):
                os.replace(Path(tmp) / name, out.parent / name)
        except OSError as exc:
            if not str(exc.filename or "").startswith(tmp):
                raise
            raise OSError(exc.errno, exc.strerror, str(out)) from None  # never the temporary name
    return opened
