"""The fleet subcommands for version 2 artifacts: grant, rewrap and revoke, the version 2 options of
seal and unseal, and how verify and inspect describe a version 2 file."""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EdgeguardError
from ..format import Container
from ._common import (
    EXIT_KEY,
    EXIT_OK,
    EXIT_POLICY,
    EXIT_USAGE,
    CliError,
    _iso,
    check_outputs,
    emit,
    load_keys,
    parse_time,
    warn,
)

SHOWN_RECIPIENTS = 20  # human output lists this many device key ids of a grant, then a count
_KEY_ID = re.compile(r"[0-9a-f]{16}\Z")
_GRANT_ID = re.compile(r"[0-9a-f]{32}\Z")
DATES = "an ISO 8601 date or date-time (UTC unless it has an offset) or @UNIXSECONDS"


# --- parsers ------------------------------------------------------------------------------------


def parse_key_id(text: str) -> str:
    if not _KEY_ID.match(text):
        raise argparse.ArgumentTypeError(f"a key id is 16 lowercase hex digits (see `edgeguard inspect`), got {text!r}")
    return text


def parse_grant_id(text: str) -> str:
    if not _GRANT_ID.match(text):
        raise argparse.ArgumentTypeError(f"a grant id is 32 lowercase hex digits (see `edgeguard inspect`), got {text!r}")
    return text


def parse_serial(text: str) -> int:
    from ..format import MAX_INT

    if not text.isdigit() or not 1 <= int(text) <= MAX_INT:
        raise argparse.ArgumentTypeError(f"a serial is an integer in 1..{MAX_INT}, got {text!r}")
    return int(text)


def add_seal_v2_arguments(p: argparse.ArgumentParser) -> None:
    """``seal --format-version``."""
    p.add_argument("--format-version", type=int, choices=(1, 2), default=1,
                   help="1 (default): recipients in the signed header, at most 64; 2: an artifact without recipients "
                        "whose devices are addressed by grants (edgeguard grant, rewrap), here an embedded grant for the "
                        "--recipient keys (keep an issuer key among them to grant more devices later)")  # fmt: skip


def add_unseal_v2_arguments(p: argparse.ArgumentParser) -> None:
    """``unseal --grant`` and ``--revocation``."""
    p.add_argument("--grant", metavar="GRANT", help="version 2: the device's grant file, or a folder of KEYID.grant files (default: the grant embedded in the file)")
    p.add_argument("--revocation", metavar="LIST", help="version 2: a signed revocation list (edgeguard revoke); a revoked grant or device key is refused (exit 6)")


def add_fleet_parsers(add: Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]) -> None:
    """Adds grant, rewrap and revoke through the main parser's `add(name, help, fn)`."""
    json_help = "machine-readable output: one JSON document on stdout"
    trust_help = "trusted publisher public key (PEM), to verify the artifact and its grant; repeatable (default: the --sign key's own public key)"
    identity_help = "issuer key: a device private key (PEM) or pkcs11: URI that the artifact's embedded grant (or --grant) addresses; repeatable"

    p = add("grant", "address a version 2 artifact to more devices: a signed grant file (or a folder of per-device grants)", cmd_grant)
    p.add_argument("sealed", help="the version 2 artifact (sealed with --format-version 2)")
    p.add_argument("-o", "--output", required=True, help="grant file to write; with --per-device a folder of KEYID.grant files (atomically; an existing one only with --force)")
    p.add_argument("--sign", required=True, metavar="KEY", help="the grant's signing key (ed25519 or p256): the publisher's, or any key the devices trust")
    p.add_argument("--identity", action="append", required=True, metavar="KEY", help=identity_help)
    p.add_argument("--recipient", action="append", default=[], metavar="PUB", help="device public key (x25519 or p256) to add; repeatable")
    p.add_argument("--recipients-file", action="append", default=[], metavar="LIST",
                   help="a file of device public keys: concatenated PEM blocks, or one PEM file path per line (relative to LIST; # comments); repeatable")  # fmt: skip
    p.add_argument("--per-device", action="store_true", help="write one grant per device, named by its key id, into the OUTPUT folder")
    p.add_argument("--grant", metavar="GRANT", help="a grant that opens the artifact for --identity, instead of its embedded grant")
    p.add_argument("--not-before", type=parse_time, metavar="DATE", help=f"devices refuse the grant before DATE: {DATES}")
    p.add_argument("--not-after", type=parse_time, metavar="DATE", help="devices refuse the grant after DATE (a licence expiry; same formats)")
    p.add_argument("--trust", action="append", default=[], metavar="PUB", help=trust_help)
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is one of the inputs)")
    p.add_argument("--json", action="store_true", help=json_help)

    p = add("rewrap", "add or remove devices of a version 2 artifact's embedded grant; the payload is copied byte for byte", cmd_rewrap)
    p.add_argument("sealed", help="the version 2 artifact")
    p.add_argument("-o", "--output", required=True, help="the artifact with its new embedded grant (atomically; an existing file only with --force)")
    p.add_argument("--sign", required=True, metavar="KEY", help="the new grant's signing key (ed25519 or p256)")
    p.add_argument("--identity", action="append", required=True, metavar="KEY", help=identity_help)
    p.add_argument("--add", action="append", default=[], metavar="PUB", help="device public key to add; repeatable")
    p.add_argument("--add-file", action="append", default=[], metavar="LIST", help="a file of device public keys to add (as grant --recipients-file); repeatable")
    p.add_argument("--remove", action="append", default=[], metavar="KEYID|PUB", help="device to remove: its key id or its public key file; repeatable")
    p.add_argument("--grant", metavar="GRANT", help="start from this grant instead of the embedded one")
    p.add_argument("--not-before", type=parse_time, metavar="DATE", help=f"devices refuse the new grant before DATE: {DATES}")
    p.add_argument("--not-after", type=parse_time, metavar="DATE", help="devices refuse the new grant after DATE (same formats)")
    p.add_argument("--trust", action="append", default=[], metavar="PUB", help=trust_help)
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is one of the inputs)")
    p.add_argument("--json", action="store_true", help=json_help)

    p = add("revoke", "write a signed revocation list of grant ids and device key ids (version 2)", cmd_revoke)
    p.add_argument("-o", "--output", required=True, help="revocation list file to write (atomically; an existing one only with --force)")
    p.add_argument("--sign", required=True, metavar="KEY", help="signing key (ed25519 or p256) the devices trust")
    p.add_argument("--serial", required=True, type=parse_serial, metavar="N",
                   help="1..2^53-1, higher than every earlier list of this signer: devices refuse a lower serial than one they saw")  # fmt: skip
    p.add_argument("--grant-id", action="append", default=[], type=parse_grant_id, metavar="ID", help="revoked grant id (32 hex digits); repeatable")
    p.add_argument("--key", action="append", default=[], metavar="KEYID|PUB", help="revoked device: its key id or public key file; repeatable")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is one of the inputs)")
    p.add_argument("--json", action="store_true", help=json_help)


# --- helpers ------------------------------------------------------------------------------------


def _device_keys(paths: list[str], lists: list[str], option: str, list_option: str) -> list[Any]:
    from ..recipients import load_recipient

    out: list[Any] = [load_keys(load_recipient, p, option, "public", "a device's") for p in paths]
    for name in lists:
        try:
            text = Path(name).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {list_option} {name}: {exc.strerror}") from None
        if b"-----BEGIN" in text:
            blocks = re.findall(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", text, re.S)
            if not blocks:
                raise CliError(f"{list_option} {name} holds no PEM public key", code=EXIT_KEY)
            for i, block in enumerate(blocks):
                try:
                    out.append(load_recipient(block + b"\n"))
                except EdgeguardError as exc:
                    raise CliError(f"{list_option} {name}: key {i + 1}: {exc}", code=EXIT_KEY) from None
        else:
            base = Path(name).parent
            for line in text.decode("utf-8", "replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(load_keys(load_recipient, base / line, list_option, "public", "a device's"))
    seen: set[str] = set()
    for r in out:
        if r.key_id in seen:
            raise CliError(f"device key {r.key_id} is given twice", code=EXIT_USAGE)
        seen.add(r.key_id)
    return out


def _key_ids(values: list[str], option: str) -> list[str]:
    from ..keys import key_id, load_public_key

    out = []
    for v in values:
        if _KEY_ID.match(v):
            out.append(v)
        elif os.path.exists(v):
            out.append(key_id(load_keys(load_public_key, v, option, "public", "a device's")))
        else:
            raise CliError(f"{option} {v!r} is neither a key id (16 hex digits) nor a public key file", code=EXIT_USAGE)
    return out


def _issuer(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(signer, trust store, identities) of grant and rewrap."""
    from ..keys import SigningKey, TrustStore
    from ..recipients import PKCS11_SCHEME, load_identity, resolve_identities

    signer = load_keys(SigningKey.load, args.sign, "--sign", "private", "a")
    trust = load_keys(TrustStore.load, args.trust, "--trust", "public", "the publisher's") if args.trust else TrustStore([signer.verifying_key])
    keys = [p if p.startswith(PKCS11_SCHEME) else load_keys(load_identity, p, "--identity", "private", "an issuer's") for p in args.identity]
    return signer, trust, resolve_identities(keys)


def _window(args: argparse.Namespace) -> None:
    if args.not_before is not None and args.not_after is not None and args.not_before >= args.not_after:
        raise CliError(f"--not-before ({_iso(args.not_before)}) must be earlier than --not-after ({_iso(args.not_after)})", code=EXIT_USAGE)
    if args.not_after is not None and args.not_after < time.time():
        warn(f"--not-after {_iso(args.not_after)} is in the past: devices will refuse this grant as expired")


def _grant_info(grant: Any) -> dict[str, Any]:
    b = grant.body
    return {
        "grant_id": b.grant_id,
        "artifact_id": b.artifact,
        "signer": {"alg": b.signer_alg, "key_id": b.signer_key_id},
        "issued": _iso(b.issued),
        "not_before": _iso(b.not_before),
        "not_after": _iso(b.not_after),
        "devices": len(b.recipients),
        "bytes": len(grant),
    }


def _inputs(args: argparse.Namespace, *names: str) -> list[Any]:
    out: list[Any] = [args.sealed, args.sign, *args.trust, *[i for i in args.identity if not i.startswith("pkcs11:")]]
    for n in names:
        out += getattr(args, n)
    return out + ([args.grant] if args.grant else [])


# --- commands -----------------------------------------------------------------------------------


def cmd_grant(args: argparse.Namespace) -> int:
    from .._files import write_file
    from ..grants import issue_device_grants, issue_grant, unlock, write_grant_folder

    _window(args)
    if not args.recipient and not args.recipients_file:
        raise CliError("no device given", hint="add --recipient DEVICE.pub (repeatable) or --recipients-file LIST", code=EXIT_USAGE)
    out = Path(args.output)
    inputs = _inputs(args, "recipient", "recipients_file")
    if args.per_device:
        if any(Path(p).resolve().is_relative_to(out.resolve()) for p in inputs if p):
            raise CliError(f"the output folder {out} is or holds one of the inputs", hint="choose another output path", code=EXIT_USAGE)
        if os.path.lexists(out) and not args.force:
            raise CliError(f"{out} already exists", hint="pass --force to replace it")
        if not out.parent.is_dir() or not os.access(out.parent, os.W_OK | os.X_OK):
            raise CliError(f"cannot write {out}: the directory {out.parent} is missing or not writable")
    else:
        check_outputs([out], inputs, force=args.force)
    recipients = _device_keys(args.recipient, args.recipients_file, "--recipient", "--recipients-file")
    signer, trust, identities = _issuer(args)
    unlocked = unlock(args.sealed, identities, trust, grant=args.grant)
    try:
        if args.per_device:
            grants = issue_device_grants(unlocked, recipients, signer, not_before=args.not_before, not_after=args.not_after)
            write_grant_folder(grants, out, overwrite=args.force)
            sizes = [len(g) for g in grants.values()]
            info = {"output": str(out), "artifact_id": unlocked.artifact_id.hex(), "per_device": True, "devices": len(grants),
                    "bytes": sum(sizes), "grants": {k: g.body.grant_id for k, g in grants.items()}}  # fmt: skip
            emit(args, info, f"wrote {len(grants):,} grants ({sum(sizes):,} bytes) into {out}/ for artifact {unlocked.artifact_id.hex()}")
            return EXIT_OK
        grant = issue_grant(unlocked, recipients, signer, not_before=args.not_before, not_after=args.not_after)
    except ValueError as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None
    try:
        write_file(out, grant.to_bytes(), overwrite=args.force)
    except FileExistsError:
        raise CliError(f"{out} already exists", hint="pass --force to replace it") from None
    info = {"output": str(out), "per_device": False, **_grant_info(grant)}
    emit(args, info, f"wrote grant {grant.body.grant_id} for {len(recipients):,} device(s) ({len(grant):,} bytes) -> {out}\n"
                     f"artifact    {unlocked.artifact_id.hex()}")  # fmt: skip
    return EXIT_OK


def cmd_rewrap(args: argparse.Namespace) -> int:
    from ..grants import rewrap

    _window(args)
    if not args.add and not args.add_file and not args.remove:
        raise CliError("nothing to change", hint="add --add DEVICE.pub, --add-file LIST or --remove KEYID", code=EXIT_USAGE)
    removes = [r for r in args.remove if not _KEY_ID.match(r)]
    check_outputs([args.output], _inputs(args, "add", "add_file") + removes, force=args.force)
    added = _device_keys(args.add, args.add_file, "--add", "--add-file")
    removed = _key_ids(args.remove, "--remove")
    signer, trust, identities = _issuer(args)
    try:
        grant = rewrap(args.sealed, args.output, identities, trust, signer, add=added, remove=removed, grant=args.grant,
                       not_before=args.not_before, not_after=args.not_after, overwrite=args.force)  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None
    except FileExistsError:
        raise CliError(f"{args.output} already exists", hint="pass --force to replace it") from None
    info = {"output": str(args.output), "added": [r.key_id for r in added], "removed": removed, **_grant_info(grant)}
    emit(args, info, f"rewrapped {args.sealed} -> {args.output}: +{len(added)} -{len(removed)} device(s), "
                     f"now {len(grant.body.recipients):,} in grant {grant.body.grant_id}; payload unchanged")  # fmt: skip
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    from .._files import write_file
    from ..keys import SigningKey
    from ..revocation import make_revocation

    keys_files = [k for k in args.key if not _KEY_ID.match(k)]
    check_outputs([args.output], [args.sign, *keys_files], force=args.force)
    keys = _key_ids(args.key, "--key")
    signer = load_keys(SigningKey.load, args.sign, "--sign", "private", "a")
    data = make_revocation(signer, args.serial, grants=args.grant_id, keys=keys)
    try:
        write_file(args.output, data, overwrite=args.force)
    except FileExistsError:
        raise CliError(f"{args.output} already exists", hint="pass --force to replace it") from None
    if not args.grant_id and not args.key:
        warn("the list revokes nothing (no --grant-id, no --key): it only raises the serial")
    info = {"output": str(args.output), "serial": args.serial, "signer": {"alg": signer.alg, "key_id": signer.key_id},
            "grants": sorted(set(args.grant_id)), "keys": sorted(set(keys)), "bytes": len(data)}  # fmt: skip
    emit(args, info, f"wrote revocation list serial {args.serial} ({len(info['grants'])} grant(s), {len(info['keys'])} key(s)) -> {args.output}")
    return EXIT_OK


# --- seal, unseal, verify and inspect of version 2 files ------------------------------------------


def unseal_admission(args: argparse.Namespace, trust: Any) -> Callable[[Any, str], None]:
    """unseal's grant check: the grant's window (exit 6 unless --ignore-validity), then --revocation."""
    from ..errors import LoadRefusedError
    from ..grants import check_grant_validity
    from ..revocation import RevocationList

    revoked = RevocationList.load(args.revocation, trust) if getattr(args, "revocation", None) else None

    def admit(body: Any, key_id: str) -> None:
        try:
            check_grant_validity(body, time.time())
        except LoadRefusedError as exc:
            if not args.ignore_validity:
                raise CliError(f"{args.sealed}: {exc}", code=EXIT_POLICY,
                               hint="the grant verifies; pass --ignore-validity to accept it anyway") from None  # fmt: skip
            warn(f"{exc}; accepted because of --ignore-validity")
        if revoked is not None:
            revoked.check(body.grant_id, key_id)

    return admit


def describe_v2(container: Container) -> dict[str, Any]:
    """What verify and inspect print for a version 2 artifact (and its embedded grant, if any)."""
    from ..format_v2 import parse_grant
    from ..grants import artifact_id
    from ._common import describe_header

    h = container.header
    info = describe_header(_V1View(h), container.total_len)  # type: ignore[arg-type]
    grant = parse_grant(container.embedded_grant) if container.embedded_grant else None
    info.update({
        "format_version": 2,
        "artifact_id": artifact_id(container).hex(),
        "key_commitment": h.key_commitment.hex(),
        "recipients": [{"type": s.type, "key_id": s.key_id} for s in grant.body.recipients] if grant else [],
        "embedded_grant": _grant_info(grant) if grant else None,
    })  # fmt: skip
    return info


class _V1View:
    """A version 2 payload header seen through describe_header (which reads `recipients`)."""

    def __init__(self, h: Any) -> None:
        self._h = h
        self.recipients = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)


def describe_v2_lines(info: dict[str, Any]) -> list[str]:
    lines = [f"artifact    {info['artifact_id']} (format version 2)", f"commitment  {info['key_commitment']}"]
    g = info.get("embedded_grant")
    if g is None:
        lines.append("grant       none embedded: devices need their own grant (edgeguard grant)")
    else:
        window = f", valid from {g['not_before'] or '-'} until {g['not_after'] or '-'}" if g["not_before"] or g["not_after"] else ""
        lines.append(f"grant       {g['grant_id']} for {g['devices']:,} device(s), signed by {g['signer']['alg']} key {g['signer']['key_id']}{window}")
    return lines


__all__ = ["add_fleet_parsers", "add_seal_v2_arguments", "add_unseal_v2_arguments", "describe_v2", "describe_v2_lines", "unseal_admission"]
