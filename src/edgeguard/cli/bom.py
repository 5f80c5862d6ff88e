"""``seal --model-card FILE | --bom FILE | --no-bom`` and ``edgeguard bom``: the ML-BOM sealed in
the signed payload, and reading it back after verification and decryption.

    edgeguard bom SEALED (--identity KEY... | --passphrase) --trust PUB... [-o OUT [--force]] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import EXIT_CODES, EXIT_FORMAT, EXIT_OK, EXIT_USAGE, CliError, check_outputs, emit, load_keys, read_passphrase


def add_bom_seal_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model-card", metavar="FILE",
                   help="JSON or YAML model card (licence, datasets, intended use, limitations, metrics; docs/cli.md) for the sealed CycloneDX ML-BOM")
    g.add_argument("--bom", metavar="FILE", help="seal this existing CycloneDX or SPDX JSON document (at most 4 MiB) instead of generating an ML-BOM")
    g.add_argument("--no-bom", action="store_true", help="seal no ML-BOM (by default a CycloneDX 1.6 ML-BOM is generated and signed with the model)")


def bom_inputs(args: argparse.Namespace) -> list[str | None]:
    return [getattr(args, "model_card", None), getattr(args, "bom", None)]


def bom_section(args: argparse.Namespace, model: Path) -> Any:
    """What ``seal_model(ml_bom=...)`` takes for these options: the attached document's bytes, an
    MlBom builder, or None with --no-bom.

    Raises:
        CliError: an unusable model card or BOM (EXIT_FORMAT) or an unreadable file.
    """
    from ..bom import BomError, MlBom, load_attached_bom, load_model_card

    if getattr(args, "no_bom", False):
        return None
    try:
        if getattr(args, "bom", None):
            return load_attached_bom(args.bom)
        card = load_model_card(args.model_card) if getattr(args, "model_card", None) else None
    except BomError as exc:
        raise CliError(str(exc), code=EXIT_FORMAT) from None
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return MlBom(model_card=card, source_path=model)


def add_bom_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "bom", help="print the ML-BOM sealed with a model (after verifying and decrypting it)",
        description="Verify and decrypt a sealed file, then print the CycloneDX ML-BOM (or attached SBOM) signed with it. "
                    "The BOM describes the architecture, so it is inside the encryption: this needs a device key.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sealed", help="sealed file")
    p.add_argument("--identity", action="append", default=[], metavar="KEY", help="device private key (PEM) or pkcs11: URI; repeatable")
    p.add_argument("--passphrase", action="store_true", help="open with a passphrase (asked on the terminal or taken from $EDGEGUARD_PASSPHRASE)")
    p.add_argument("--trust", action="append", required=True, metavar="PUB", help="trusted publisher public key (PEM); repeatable")
    p.add_argument("-o", "--output", help="write the BOM document here (exactly as sealed) instead of printing it")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--json", action="store_true", help="print the BOM document itself (JSON) instead of a summary")
    p.set_defaults(func=cmd_bom)
    return p


def open_identities(args: argparse.Namespace) -> list[Any]:
    from ..recipients import PKCS11_SCHEME, load_identity, resolve_identities

    if bool(args.identity) == bool(args.passphrase):
        raise CliError("give exactly one of --identity KEY or --passphrase", code=EXIT_USAGE)
    keys = [p if p.startswith(PKCS11_SCHEME) else load_keys(load_identity, p, "--identity", "private", "a device's") for p in args.identity]
    return resolve_identities(keys, read_passphrase(confirm=False) if args.passphrase else None)


def read_section(sealed: str, identities: list[Any], trust: Any, name: str) -> tuple[Any, bytes | None]:
    """(container, bytes of section `name` or None) of a fully verified and decrypted file; the
    plaintext lives in a secure buffer that is wiped before returning."""
    from ..secure_memory import SecureBuffer
    from ..unseal import decrypt_file

    opened = decrypt_file(sealed, identities, trust, allocate=SecureBuffer)
    try:
        data = bytes(opened.layout.section(opened.buffer, name)) if name in opened.layout.sections else None
        return opened.container, data
    finally:
        opened.buffer.close()


def cmd_bom(args: argparse.Namespace) -> int:
    from ..bom import BomError, check_bom, summary
    from ..keys import TrustStore

    if args.output:
        check_outputs([args.output], [args.sealed, *args.identity, *args.trust], force=args.force)
    trust = load_keys(TrustStore.load, args.trust, "--trust", "public", "the publisher's")
    _container, raw = read_section(args.sealed, open_identities(args), trust, "ml_bom")
    if raw is None:
        raise CliError(f"{args.sealed} carries no ML-BOM", hint="seal it again without --no-bom, or with --model-card or --bom", code=EXIT_FORMAT)
    try:
        doc = check_bom(raw, "the sealed ML-BOM")
    except BomError as exc:
        raise CliError(str(exc), code=EXIT_FORMAT) from None
    if args.output:
        from .._files import write_file

        write_file(args.output, raw, overwrite=args.force)
    if args.json and not args.output:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return EXIT_OK
    info = summary(doc)
    lines = [f"{k:<10} {v if not isinstance(v, (list, dict)) else json.dumps(v)}" for k, v in info.items() if v not in (None, [], {})]
    emit(args, {"output": args.output, **info}, ("(verified and decrypted) ML-BOM signed with the model:\n" + "\n".join(lines)) +
         (f"\nwritten to {args.output}" if args.output else ""))  # fmt: skip
    return EXIT_OK
