"""The `edgeguard` command line.

Errors print `edgeguard: error: ...` (and `edgeguard: hint: ...` where one helps) on stderr,
never a traceback, and exit with a documented code (see EXIT_CODES and docs/cli.md). Each
subcommand lives in a module of this package; the library modules hold no CLI or demo code.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .. import kinds
from ..errors import (
    EdgeguardError,
    FormatError,
    IntegrityError,
    KeyFileError,
    LoadRefusedError,
    NotARecipientError,
    UntrustedSignerError,
)
from ..format import CIPHERS, DEFAULT_CHUNK_SIZE, MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_LABELS, MAX_NAME_LENGTH, MAX_RECIPIENTS
from ._common import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_FORMAT,
    EXIT_INTEGRITY,
    EXIT_KEY,
    EXIT_OK,
    EXIT_POLICY,
    EXIT_USAGE,
    PASSPHRASE_ENV,
    CliError,
    parse_chunk_size,
    parse_label,
    parse_name,
    parse_threads,
    parse_time,
    parse_version,
    safe_lines,
    say,
)
from .commands import cmd_inspect, cmd_keygen, cmd_seal, cmd_unseal, cmd_verify


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(lambda line: None if args.json else say(line))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    from .profile import run_profile

    return run_profile(args)


# ---------------------------------------------------------------------------------------------


class _Version(argparse.Action):
    """``--version``: edgeguard's version is looked up only when asked (it costs an import)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from .. import __version__

        print(f"edgeguard {__version__}")
        parser.exit()


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors in the documented form (`edgeguard: error: ...`, exit 2);
    argparse itself would print `edgeguard seal: error: ...`. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        command = self.prog.partition(" ")[2]
        self.exit(EXIT_USAGE, safe_lines(f"edgeguard: error: {command + ': ' if command else ''}{message}") + "\n")


def build_parser() -> argparse.ArgumentParser:
    from .audit import add_audit_arguments, add_audit_parser, audited
    from .bench import add_bench_parser
    from .bom import add_bom_parser, add_bom_seal_arguments
    from .evidence import add_evidence_parser
    from .grants import add_fleet_parsers, add_seal_v2_arguments, add_unseal_v2_arguments
    from .profile import add_profile_parser, add_seal_arguments

    parser = _ArgumentParser(
        prog="edgeguard",
        description="Seal ML models for edge devices, verify them, and run them from locked memory.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=fn)
        return p

    from .._core import MAX_THREADS

    json_help = "machine-readable output: one JSON document on stdout"
    threads_help = f"worker threads, 0..{MAX_THREADS} (default 0: every core, at most {MAX_THREADS})"
    trust_help = "trusted publisher public key (PEM); repeatable"
    validity_help = "accept a file outside its --not-before/--not-after window (with a warning) instead of exit code 6"

    p = add("keygen", "generate a signing key (ed25519, p256) or a device key (x25519, p256)", cmd_keygen)
    p.add_argument("--type", choices=("ed25519", "p256", "x25519"), required=True,
                   help="ed25519: publisher signing key; x25519: device key; p256: either (e.g. for hardware that lacks the others)")
    p.add_argument("-o", "--output", required=True, help="private key file (PKCS#8 PEM, created 0600); never overwritten")
    p.add_argument("--public", help="public key file (default: OUTPUT.pub); never overwritten")
    p.add_argument("--json", action="store_true", help=json_help)

    p = add("seal", "encrypt, sign and wrap a model for one or more devices", cmd_seal)
    p.add_argument("model", help="ONNX model, safetensors file, or any file (sealed raw)")
    p.add_argument("-o", "--output", required=True, help="sealed file to write (atomically; an existing one only with --force)")
    p.add_argument("--sign", required=True, metavar="KEY", help="publisher's private signing key (ed25519 or p256)")
    p.add_argument("--recipient", action="append", default=[], metavar="PUB", help=f"device public key (x25519 or p256); repeatable, up to {MAX_RECIPIENTS}")
    p.add_argument("--passphrase", action="store_true", help=f"seal to a passphrase instead (asked on the terminal or taken from ${PASSPHRASE_ENV})")
    p.add_argument("--cipher", choices=(*CIPHERS, "auto"), default="aes-256-gcm",
                   help="payload AEAD; chacha20-poly1305 suits ARM cores without AES instructions; auto picks from --target (or this machine)")
    p.add_argument("--target", metavar="JSON", help="with --cipher auto: the target device's `edgeguard bench` results (or its fingerprint)")
    p.add_argument("--chunk-size", type=parse_chunk_size, default=DEFAULT_CHUNK_SIZE, metavar="SIZE",
                   help="power of two, 4K..64M (default 1M); K, M suffixes")
    p.add_argument("--name", type=parse_name, help=f"model name, 1..{MAX_NAME_LENGTH} bytes (default: the file name without extension)")
    p.add_argument("--model-version", type=parse_version, default=1, metavar="N", help="monotonic version for anti-rollback, an integer >= 0 (default 1)")
    dates = "an ISO 8601 date or date-time (UTC unless it has an offset: 2027-01-31, 2027-01-31T12:00:00+01:00) or @UNIXSECONDS"
    p.add_argument("--not-before", type=parse_time, metavar="DATE", help=f"devices refuse the model before DATE: {dates}")
    p.add_argument("--not-after", type=parse_time, metavar="DATE", help="devices refuse the model after DATE (same formats)")
    p.add_argument("--label", type=parse_label, action="append", default=[], metavar="K=V",
                   help=f"signed metadata label; repeatable, up to {MAX_LABELS}; key 1..{MAX_LABEL_KEY} bytes, value up to {MAX_LABEL_VALUE}")
    p.add_argument("--kind", choices=kinds.NAMES, help="payload kind (default: onnx for .onnx, safetensors for .safetensors, else raw)")
    p.add_argument("--optimize", action="store_true", help="seal onnxruntime's offline (basic-level) optimization of the graph, for strict-mode devices")
    p.add_argument("--threads", type=parse_threads, default=0, help=threads_help)
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is one of the inputs)")
    p.add_argument("--json", action="store_true", help=json_help)
    add_seal_arguments(p)
    add_seal_v2_arguments(p)
    add_bom_seal_arguments(p)

    p = add("verify", "check the publisher signature, every chunk and the validity window (no decryption key needed)", audited(cmd_verify, "model.verify"))
    p.add_argument("sealed", help="sealed file to verify")
    p.add_argument("--trust", action="append", required=True, metavar="PUB", help=trust_help)
    p.add_argument("--ignore-validity", action="store_true", help=validity_help)
    p.add_argument("--threads", type=parse_threads, default=0, help=threads_help)
    p.add_argument("--json", action="store_true", help=json_help)
    add_audit_arguments(p)

    p = add("inspect", "print the public header (verifies nothing, needs no key)", cmd_inspect)
    p.add_argument("sealed", help="sealed file whose header to print")
    p.add_argument("--identity", action="append", default=[], metavar="KEY",
                   help="with --trust: also verify, decrypt (in locked memory) and report the protected coverage; "
                        "a device private key (PEM file) or a pkcs11: URI; repeatable")
    p.add_argument("--passphrase", action="store_true", help=f"the same with a passphrase (asked on the terminal or taken from ${PASSPHRASE_ENV})")
    p.add_argument("--trust", action="append", default=[], metavar="PUB", help="trusted publisher public key, with --identity or --passphrase; repeatable")
    p.add_argument("--threads", type=parse_threads, default=0, help=threads_help)
    p.add_argument("--json", action="store_true", help=json_help)

    p = add("unseal", "explicit recovery: verify, decrypt and write the original model", audited(cmd_unseal, "model.unseal"))
    add_audit_arguments(p)
    p.add_argument("sealed", help="sealed file to open")
    p.add_argument("-o", "--output", required=True, help="where to write the original model (atomically; an existing file only with --force)")
    p.add_argument("--identity", action="append", default=[], metavar="KEY", help="device private key (PEM file) or a key on a PKCS#11 token (pkcs11: URI); repeatable")
    p.add_argument("--passphrase", action="store_true", help=f"open with a passphrase (asked on the terminal or taken from ${PASSPHRASE_ENV})")
    p.add_argument("--trust", action="append", required=True, metavar="PUB", help=trust_help)
    p.add_argument("--ignore-validity", action="store_true", help=validity_help)
    p.add_argument("--threads", type=parse_threads, default=0, help=threads_help)
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists (never when OUTPUT is one of the inputs)")
    p.add_argument("--json", action="store_true", help=json_help)
    add_unseal_v2_arguments(p)
    add_fleet_parsers(add)

    p = add("demo", "the whole flow: keygen, seal, verify, load on a device, and the extraction detector", cmd_demo)
    p.add_argument("--json", action="store_true", help="a JSON summary of each step on stdout instead of the narration")
    add_profile_parser(sub).set_defaults(func=cmd_profile)
    add_bench_parser(sub)
    add_audit_parser(sub)
    add_bom_parser(sub)
    add_evidence_parser(sub)
    return parser


def _error_code(exc: EdgeguardError) -> int:
    if isinstance(exc, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(exc, FormatError):
        return EXIT_FORMAT
    if isinstance(exc, (KeyFileError, NotARecipientError, UntrustedSignerError)):
        return EXIT_KEY
    if isinstance(exc, LoadRefusedError):
        return EXIT_POLICY
    return EXIT_ERROR


_HINTS: dict[type, str] = {
    UntrustedSignerError: "pass the publisher's public key with --trust",
    NotARecipientError: "the file was sealed for other keys; `edgeguard inspect` lists its recipients' key ids",
    IntegrityError: "the file is corrupted or was tampered with; get a fresh copy from the publisher",
}


def _fail(message: str, hint: str | None, code: int) -> int:
    say(f"edgeguard: error: {message}", file=sys.stderr)  # messages name files and quote headers
    if hint:
        say(f"edgeguard: hint: {hint}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        return _fail(str(exc), exc.hint, exc.code)
    except EdgeguardError as exc:
        hint = next((h for t, h in _HINTS.items() if isinstance(exc, t)), None)
        return _fail(str(exc), hint, _error_code(exc))
    except BrokenPipeError:  # e.g. `edgeguard inspect --json | head`: not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (ValueError, OSError) as exc:  # after BrokenPipeError, an OSError that would shadow it
        message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename and exc.strerror else str(exc)
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        return _fail(message, "nothing was written; free some space or write elsewhere" if full else None, EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", None, 130)


__all__ = ["EXIT_CODES", "EXIT_ERROR", "EXIT_FORMAT", "EXIT_INTEGRITY", "EXIT_KEY", "EXIT_OK", "EXIT_POLICY", "EXIT_USAGE", "CliError", "build_parser", "main"]
