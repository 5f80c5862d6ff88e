"""``edgeguard evidence``: a Markdown and JSON compliance evidence report for one sealed artifact
(and, optionally, a device's audit log).

    edgeguard evidence SEALED --trust PUB... [--identity KEY... | --passphrase] [--version-store FILE]
                       [--audit LOG... (--audit-key PUB | --audit-mac-key FILE) [--anchor FILE]] -o DIR [--force] [--json]

Writes DIR/evidence.md and DIR/evidence.json. Exit 0 when every check that ran passed, 3 when the
artifact or the log failed one (the report is written either way and says which).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import EXIT_CODES, EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE, CliError, check_outputs, emit, load_keys


def add_evidence_parser(sub: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "evidence", help="write a compliance evidence report (Markdown and JSON) of what was verified",
        description="Verify a sealed artifact (and a device audit log) and write DIR/evidence.md and DIR/evidence.json: each verified fact "
                    "and the controls it supports (NIST SP 800-53, NIST AI RMF, EU AI Act, ISO/IEC 42001, MITRE ATLAS), what failed, "
                    "what was not checked and what is not covered.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sealed", help="sealed file")
    p.add_argument("--trust", action="append", required=True, metavar="PUB", help="trusted publisher public key (PEM); repeatable")
    p.add_argument("--identity", action="append", default=[], metavar="KEY",
                   help="device private key or pkcs11: URI: also check every AEAD tag, the detector profile, the ML-BOM and protected coverage")
    p.add_argument("--passphrase", action="store_true", help="decrypt with a passphrase instead of --identity")
    p.add_argument("--version-store", metavar="FILE", help="the device's anti-rollback version store (read only, never updated)")
    p.add_argument("--audit", action="append", default=[], metavar="LOG", help="the device's audit log (its rotated segments are read too)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--audit-key", metavar="PUB", help="the device's checkpoint public key (Ed25519 or P-256 PEM)")
    g.add_argument("--audit-mac-key", metavar="FILE", help="the device secret its checkpoints are MACed with")
    p.add_argument("--anchor", metavar="FILE", help="audit checkpoints kept off the device: the log must still hold each")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for evidence.md and evidence.json (created if missing)")
    p.add_argument("--force", action="store_true", help="replace an existing report in DIR")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout too")
    p.set_defaults(func=cmd_evidence)
    return p


def cmd_evidence(args: argparse.Namespace) -> int:
    from .._files import write_file
    from ..audit import CheckpointVerifier, HmacSigner, load_anchors, segment_paths
    from ..evidence import collect, render_markdown
    from ..keys import TrustStore
    from .bom import open_identities

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} is not a directory")
    if (args.audit_key or args.audit_mac_key or args.anchor) and not args.audit:
        raise CliError("--audit-key, --audit-mac-key and --anchor apply with --audit LOG", code=EXIT_USAGE)
    if not out.exists():
        if not out.parent.is_dir():
            raise CliError(f"cannot create {out}: there is no directory {out.parent}")
        out.mkdir()
    md, js = out / "evidence.md", out / "evidence.json"
    inputs = [args.sealed, *args.trust, *args.identity, *args.audit, args.audit_key, args.audit_mac_key, args.anchor, args.version_store]
    check_outputs([md, js], inputs, force=args.force)
    trust = load_keys(TrustStore.load, args.trust, "--trust", "public", "the publisher's")
    identities = open_identities(args) if args.identity or args.passphrase else []
    verifier = None
    if args.audit_key:
        verifier = CheckpointVerifier(args.audit_key)
    elif args.audit_mac_key:
        verifier = CheckpointVerifier(HmacSigner(args.audit_mac_key))
    anchors = load_anchors(args.anchor) if args.anchor else []
    paths: list[str] = []
    for log in args.audit:
        paths += [str(p) for p in segment_paths(log) if str(p) not in paths] or [log]
    ev = collect(args.sealed, trust, identities=identities, audit_paths=paths, audit_verifier=verifier, anchors=anchors,
                 version_store=args.version_store)  # fmt: skip
    doc = ev.to_json()
    write_file(js, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), overwrite=args.force)
    write_file(md, render_markdown(ev).encode(), overwrite=args.force)
    lines = [f"wrote {md} and {js}: {len(ev.facts)} verified fact(s), {len(ev.failures)} failed check(s), {len(ev.not_checked)} not checked"]
    lines += [f"  FAILED {f.id}: {f.statement}" for f in ev.failures]
    emit(args, doc, "\n".join(lines))
    if not ev.ok:
        raise CliError(f"{len(ev.failures)} check(s) failed; the report says which", code=EXIT_INTEGRITY)
    return EXIT_OK
