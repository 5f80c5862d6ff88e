"""``edgeguard audit verify|show|export`` and the ``--audit LOG`` option of ``verify`` and ``unseal``.

    edgeguard audit verify LOG... (--key PUB | --mac-key FILE) [--anchor FILE] [--json]
    edgeguard audit show LOG... [--key PUB | --mac-key FILE] [--type T] [--json]
    edgeguard audit export LOG... [--key PUB | --mac-key FILE] [--format jsonl|otel] [-o OUT [--force]] [--json]

A LOG that has rotated segments beside it (LOG.1, LOG.2, ...) is read with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import EXIT_CODES, EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE, CliError, check_outputs, emit, say, warn

# OpenTelemetry severity numbers (logs data model): INFO 9, WARN 13, ERROR 17.
_SEVERITY = {"model.refused": (17, "ERROR"), "detector.alert": (13, "WARN"), "audit.dropped": (13, "WARN"),
             "checkpoint.error": (17, "ERROR"), "log.resume": (13, "WARN")}  # fmt: skip


# ------------------------------------------------------------------ --audit on verify and unseal


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    """--audit LOG [--audit-key KEY | --audit-mac-key FILE] for a command that loads a sealed file."""
    p.add_argument("--audit", metavar="LOG", help="append the outcome (or the typed refusal) to this tamper-evident audit log (docs/audit.md)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--audit-key", metavar="KEY", help="with --audit: the device's checkpoint signing key (Ed25519 or P-256 PEM, or a pkcs11: URI)")
    g.add_argument("--audit-mac-key", metavar="FILE", help="with --audit: a device secret (>= 32 bytes, mode 0600) for HMAC-SHA256 checkpoints")


def audited(fn: Callable[[argparse.Namespace], int], event: str) -> Callable[[argparse.Namespace], int]:
    """`fn` recording its outcome in ``--audit LOG`` when given: the verified header's facts on
    success, the error's class and message on failure (which is then raised as before)."""

    def run(args: argparse.Namespace) -> int:
        if not getattr(args, "audit", None):
            if getattr(args, "audit_key", None) or getattr(args, "audit_mac_key", None):
                raise CliError("--audit-key and --audit-mac-key apply with --audit LOG", code=EXIT_USAGE)
            return fn(args)
        from ..audit import AuditLog
        from ..audit.hooks import header_facts, refusal
        from ..unseal import inspect_file

        if os.path.abspath(args.audit) in {os.path.abspath(p) for p in (args.sealed, getattr(args, "output", None)) if p}:
            raise CliError("--audit LOG must not be the sealed file or the output", code=EXIT_USAGE)
        log = AuditLog(args.audit, key=args.audit_key, mac_key=args.audit_mac_key, threaded=False, events="all")
        try:
            try:
                code = fn(args)
            except BaseException as exc:
                log.record("model.refused", {**refusal(args.sealed, exc), "command": args.command})
                raise
            facts = header_facts(inspect_file(args.sealed))  # verified by fn, which succeeded
            log.record(event, {"file": Path(args.sealed).name, **facts, "command": args.command, "exit_code": code})
            return code
        finally:
            log.close()

    return run


# ------------------------------------------------------------------ audit subcommands


def add_audit_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="verify, print or export a device's tamper-evident audit log",
        description="Verify, print or export an edgeguard audit log (docs/audit.md).", epilog=EXIT_CODES, formatter_class=fmt)
    p.add_argument("--json", dest="audit_json", action="store_true", help="machine-readable output (also accepted after the subcommand)")
    p.set_defaults(func=_no_subcommand)
    cmds = p.add_subparsers(dest="audit_command", metavar="{verify,show,export}")

    def common(q: argparse.ArgumentParser, key_required: bool) -> None:
        q.add_argument("logs", nargs="+", metavar="LOG", help="the log file (its rotated segments LOG.1, LOG.2, ... beside it are read too)")
        g = q.add_mutually_exclusive_group(required=key_required)
        g.add_argument("--key", metavar="PUB", help="the device's checkpoint public key (Ed25519 or P-256 PEM)")
        g.add_argument("--mac-key", metavar="FILE", help="the device secret its checkpoints are MACed with (mode 0600)")
        q.add_argument("--anchor", metavar="FILE", help="checkpoints kept off the device (JSON, or an `audit export`): the log must still hold each")
        q.add_argument("--json", action="store_true", help="machine-readable output: one JSON document on stdout")

    q = cmds.add_parser("verify", help="check the chain, every checkpoint and the anchors; say how far the log is intact",
                        description="Check an audit log: framing, hash chain, segment links, checkpoint signatures (or MACs), anchors. "
                                    "Exit 0 when intact (a torn tail from a crash is reported, not an error), 3 when altered.",
                        epilog=EXIT_CODES, formatter_class=fmt)
    common(q, key_required=True)
    q.set_defaults(func=cmd_audit_verify)
    q = cmds.add_parser("show", help="print the records (verified first when a key is given)",
                        description="Print an audit log's records; with --key or --mac-key it is verified first.", epilog=EXIT_CODES, formatter_class=fmt)
    common(q, key_required=False)
    q.add_argument("--type", action="append", metavar="TYPE", help="only records of this type (repeatable), e.g. detector.alert")
    q.set_defaults(func=cmd_audit_show)
    q = cmds.add_parser("export", help="write the records as JSON Lines for a SIEM (or OpenTelemetry log records)",
                        description="Export an audit log as JSON Lines, one record per line (docs/audit.md, \"Export\"); "
                                    "--format otel writes OpenTelemetry log records instead.", epilog=EXIT_CODES, formatter_class=fmt)
    common(q, key_required=False)
    q.add_argument("--format", choices=("jsonl", "otel"), default="jsonl", help="jsonl (default): edgeguard's fields; otel: OTLP/JSON LogRecords")
    q.add_argument("-o", "--output", help="file to write (default: stdout)")
    q.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    q.set_defaults(func=cmd_audit_export)
    return p


def _no_subcommand(args: argparse.Namespace) -> int:
    raise CliError("audit needs a subcommand: verify, show or export", hint="edgeguard audit verify LOG --key DEVICE.pub", code=EXIT_USAGE)


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False) or getattr(args, "audit_json", False))


def _paths(args: argparse.Namespace) -> list[str]:
    from ..audit import segment_paths

    out: list[str] = []
    for name in args.logs:
        if not os.path.exists(name):
            raise CliError(f"{name}: no such audit log")
        found = [str(p) for p in segment_paths(name)] or [name]
        out += [p for p in found if p not in out]
    return out


def _verifier(args: argparse.Namespace) -> Any:
    from ..audit import CheckpointVerifier, HmacSigner

    if args.key:
        return CheckpointVerifier(args.key)
    if args.mac_key:
        return CheckpointVerifier(HmacSigner(args.mac_key))
    return None


def _report(args: argparse.Namespace) -> Any:
    from ..audit import load_anchors, verify_log

    anchors = []
    if args.anchor:
        try:
            anchors = load_anchors(args.anchor)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"{args.anchor}: not checkpoint anchors ({exc})", code=EXIT_USAGE) from None
    return verify_log(_paths(args), _verifier(args), anchors)


def describe_report(r: Any) -> str:
    if not r.records:
        return f"NOT VERIFIED: {r.problem}"
    head = "OK" if r.ok else "ALTERED"
    lines = [f"{head}: log {r.log_id}, records {r.first_seq}..{r.last_seq} intact in the hash chain"]
    if r.verified_with:
        signed = "none" if r.signed_through is None else f"{r.first_seq}..{r.signed_through}"
        lines.append(f"  checkpoints: {r.checkpoints} valid ({r.key_alg} key {r.key_id}); records vouched for: {signed}")
    elif r.key_id:
        lines.append(f"  checkpoints: {r.checkpoints} by {r.key_alg} key {r.key_id}, NOT checked (give --key or --mac-key)")
    else:
        lines.append("  no checkpoint key: the chain alone shows accidents, not an attacker who can write the file")
    if r.unsigned_tail:
        lines.append(f"  {r.unsigned_tail} record(s) after the last valid checkpoint: chained, vouched for by no key")
    if r.torn_tail:
        lines.append(f"  torn tail: {r.torn_tail} byte(s) of an incomplete record after record {r.last_seq} (a crash or a truncation)")
    lines.append("  closed cleanly" if r.closed_cleanly else "  not closed cleanly (still open, crashed, or truncated after its last record)")
    if r.anchors_checked:
        lines.append(f"  anchors: {r.anchors_checked} checked")
    if r.problem:
        lines.append(f"  problem: {r.problem}")
    return "\n".join(lines)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    r = _report(args)
    if _json(args):
        print(json.dumps(r.to_json(), indent=2, sort_keys=True))
    else:
        say(describe_report(r))
    if not r.ok:
        raise CliError(f"the audit log is not intact: {r.problem}", code=EXIT_INTEGRITY,
                       hint="records after the last one reported intact cannot be trusted")
    return EXIT_OK


def cmd_audit_show(args: argparse.Namespace) -> int:
    r = _report(args)
    records = [x for x in r.records if not args.type or x.type in args.type]
    if _json(args):
        print(json.dumps({"verification": r.to_json(), "records": [x.to_json() for x in records]}, indent=2, sort_keys=True))
    else:
        for x in records:
            say(f"{x.seq:>8}  {x.to_json()['time']}  {x.type:<16} {json.dumps(x.data, sort_keys=True)}")
        say(describe_report(r), file=sys.stderr)
    if not r.ok:
        raise CliError(f"the audit log is not intact: {r.problem}", code=EXIT_INTEGRITY)
    if not r.verified_with:
        warn("no --key or --mac-key: the records were not checked against the device's checkpoint key")
    return EXIT_OK


def otel_record(x: Any, log_id: str | None) -> dict[str, Any]:
    """One record as an OpenTelemetry LogRecord (OTLP/JSON field names; docs/audit.md)."""
    number, text = _SEVERITY.get(x.type, (9, "INFO"))
    attrs = [{"key": "event.name", "value": {"stringValue": f"edgeguard.{x.type}"}},
             {"key": "edgeguard.audit.seq", "value": {"intValue": str(x.seq)}},
             {"key": "edgeguard.audit.log_id", "value": {"stringValue": log_id or ""}},
             {"key": "edgeguard.audit.chain", "value": {"stringValue": x.chain.hex()}}]  # fmt: skip
    return {"timeUnixNano": str(x.time_us * 1000), "severityNumber": number, "severityText": text,
            "eventName": f"edgeguard.{x.type}", "body": {"stringValue": json.dumps(x.data, sort_keys=True)}, "attributes": attrs}  # fmt: skip


def cmd_audit_export(args: argparse.Namespace) -> int:
    if args.output:
        check_outputs([args.output], args.logs, force=args.force)
    r = _report(args)
    if r.problem and not r.records:
        raise CliError(f"nothing to export: {r.problem}", code=EXIT_INTEGRITY)
    if args.format == "otel":
        lines = [json.dumps(otel_record(x, r.log_id), sort_keys=True) for x in r.records]
    else:
        lines = [json.dumps(x.to_json(), sort_keys=True) for x in r.records]
    text = "".join(line + "\n" for line in lines)
    if args.output:
        from .._files import write_file

        write_file(args.output, text.encode(), overwrite=args.force)
        emit(args, {"output": args.output, "records": len(lines), "verification": r.to_json()}, f"exported {len(lines)} record(s) to {args.output}")
    else:
        sys.stdout.write(text)
    if not r.ok:
        raise CliError(f"exported the {len(lines)} intact record(s), but the log is not intact: {r.problem}", code=EXIT_INTEGRITY)
    return EXIT_OK


__all__ = ["add_audit_arguments", "add_audit_parser", "audited", "otel_record"]
