"""The `edgeguard` command line.

Errors print `edgeguard: error: ...` (and `edgeguard: hint: ...` where one helps) on stderr,
never a traceback, and exit with a documented code (see EXIT_CODES and docs/cli.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from . import __version__
from .errors import (
    EdgeguardError,
    FormatError,
    IntegrityError,
    KeyFileError,
    NotARecipientError,
    PolicyError,
    UntrustedSignerError,
)
from .format import CIPHERS, DEFAULT_CHUNK_SIZE, Container, Header

EXIT_OK = 0
EXIT_ERROR = 1  # I/O and other failures
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_INTEGRITY = 3
EXIT_FORMAT = 4
EXIT_KEY = 5  # key file problems, untrusted signer, not a recipient
EXIT_POLICY = 6
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  success
  {EXIT_ERROR}  I/O or other error (missing file, output exists, ...)
  {EXIT_USAGE}  bad command line
  {EXIT_INTEGRITY}  integrity failure: the file is not as its publisher signed it
  {EXIT_FORMAT}  not a well-formed sealed file, or an unsupported version
  {EXIT_KEY}  key problem: unusable key file, untrusted signer, or not a recipient
  {EXIT_POLICY}  refused by policy (expired, not yet valid, rolled back)"""

PASSPHRASE_ENV = "EDGEGUARD_PASSPHRASE"


class CliError(Exception):
    """An error with a message, an optional hint and an exit code, printed without a traceback."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


# ---------------------------------------------------------------------------------------------
# argument parsing helpers


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]i?B?|B)?", text.strip(), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 65536, 64K, 1M)")
    scale = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[(m.group(2) or "")[:1].upper()]
    return int(m.group(1)) * scale


def parse_threads(text: str) -> int:
    from .seal import MAX_THREADS

    if not text.isdigit() or int(text) > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"threads is a number of worker threads in 0..{MAX_THREADS} (0: all cores), got {text!r}")
    return int(text)


def parse_time(text: str) -> int:
    """Unix seconds from `@SECONDS`, an ISO 8601 date or date-time (UTC unless an offset is given)."""
    if text.startswith("@") and text[1:].isdigit():
        return int(text[1:])
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (examples: 2027-01-31, 2027-01-31T12:00:00+01:00, @1800000000)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a label is key=value, got {text!r}")
    return key, value


def _iso(ts: int | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# output helpers


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, total_bytes: int) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.enabled = sys.stderr.isatty() and total_bytes >= 32 << 20
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if not self.enabled or pct == self._last:
            return
        self._last = pct
        bar = "#" * (pct // 4)
        mib = self.total_bytes * done / max(total, 1) / (1 << 20)
        sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}% {mib:,.0f}/{self.total_bytes / (1 << 20):,.0f} MiB")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def callback(self) -> Callable[[int, int], None] | None:
        return self if self.enabled else None


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text)


def describe(container: Container) -> dict[str, Any]:
    return describe_header(container.header, container.total_len)


def describe_header(h: Header, file_size: int) -> dict[str, Any]:
    return {
        "format_version": 1,
        "cipher": h.cipher,
        "chunk_size": h.chunk_size,
        "chunk_count": h.chunk_count,
        "payload_length": h.payload_length,
        "payload_kind": h.payload_kind,
        "signer": {"alg": h.signer_alg, "key_id": h.signer_key_id},
        "recipients": [{"type": s.type, **({"key_id": s.key_id} if s.key_id else {"log_n": s.log_n})} for s in h.recipients],
        "model": {
            "name": h.model.name,
            "version": h.model.version,
            "created": _iso(h.model.created),
            "not_before": _iso(h.model.not_before),
            "not_after": _iso(h.model.not_after),
            "labels": dict(h.model.labels),
        },
        "file_size": file_size,
    }


def describe_text(info: dict[str, Any]) -> str:
    m = info["model"]
    lines = [
        f"model       {m['name']} version {m['version']} ({info['payload_kind']}, {info['payload_length']:,} bytes)",
        f"created     {m['created']}",
        f"valid       from {m['not_before'] or '-'} until {m['not_after'] or '-'}",
        f"cipher      {info['cipher']}, {info['chunk_count']} chunk(s) of {info['chunk_size']:,} bytes",
        f"signer      {info['signer']['alg']} key {info['signer']['key_id']}",
    ]
    for r in info["recipients"]:
        lines.append(f"recipient   {r['type']} " + (f"key {r['key_id']}" if "key_id" in r else f"(scrypt log_n {r['log_n']})"))
    for k, v in m["labels"].items():
        lines.append(f"label       {k}={v}")
    return "\n".join(lines)


def read_passphrase(confirm: bool) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise CliError("--passphrase needs a terminal to ask for the passphrase", hint=f"or set {PASSPHRASE_ENV} in the environment", code=EXIT_USAGE)
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise CliError("the passphrases do not match", code=EXIT_USAGE)
    if not first:
        raise CliError("the passphrase is empty", code=EXIT_USAGE)
    return first


# ---------------------------------------------------------------------------------------------
# subcommands


def cmd_keygen(args: argparse.Namespace) -> int:
    from .keys import generate_private_key, key_id, write_private_key, write_public_key

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
    from .keys import load_recipient
    from .recipients.scrypt import PassphraseRecipient

    if args.passphrase and args.recipient:
        raise CliError("--passphrase cannot be combined with --recipient", hint="a passphrase-sealed file must have no other recipient (as in age)", code=EXIT_USAGE)
    if args.passphrase:
        return [PassphraseRecipient(read_passphrase(confirm=True))]
    if not args.recipient:
        raise CliError("no recipient given", hint="add --recipient DEVICE.pub (repeatable) or --passphrase", code=EXIT_USAGE)
    return [load_recipient(p) for p in args.recipient]


def cmd_seal(args: argparse.Namespace) -> int:
    from .keys import SigningKey
    from .seal import detect_kind, seal_model

    model = Path(args.model)
    if not model.is_file():
        raise CliError(f"{model} is not a file")
    signer = SigningKey.load(args.sign)
    recipients = _recipients(args)
    from .detect.cli import profile_section

    if args.optimize:
        if (args.kind or detect_kind(model)) != "onnx":
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
    from .bench.fingerprint import choose_cipher

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

    from .optimize import optimize_onnx

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
    from .keys import TrustStore
    from .unseal import verify_file

    verified = verify_file(args.sealed, TrustStore.load(args.trust), threads=args.threads)
    info = describe(verified.container)
    emit(args, {"verified": True, **info}, f"OK: {args.sealed} is signed by trusted key {info['signer']['key_id']} and every chunk verifies\n" + describe_text(info))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from .unseal import inspect_file

    info = describe(inspect_file(args.sealed))
    emit(args, {"verified": False, **info}, describe_text(info) + "\n(header only: nothing has been verified; use `edgeguard verify`)")
    return EXIT_OK


def cmd_unseal(args: argparse.Namespace) -> int:
    from .keys import TrustStore, load_identity
    from .recipients.scrypt import PassphraseIdentity
    from .unseal import unseal_file

    if bool(args.identity) == bool(args.passphrase):
        raise CliError("give exactly one of --identity KEY or --passphrase", code=EXIT_USAGE)
    if Path(args.output).exists():
        raise CliError(f"{args.output} already exists", hint="unseal never overwrites; choose another output path")
    trust = TrustStore.load(args.trust)
    identities = [PassphraseIdentity(read_passphrase(confirm=False))] if args.passphrase else [load_identity(p) for p in args.identity]
    size = Path(args.sealed).stat().st_size
    opened = unseal_file(args.sealed, args.output, identities, trust, threads=args.threads, progress=Progress("opening", size).callback())
    info = describe(opened.container)
    emit(args, {"output": args.output, **info}, f"unsealed {args.sealed} -> {args.output}\n" + describe_text(info))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(print)
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    from .detect.cli import run_profile

    return run_profile(args)


# ---------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors in the documented form (`edgeguard: error: ...`, exit 2);
    argparse itself would print `edgeguard seal: error: ...`. Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        command = self.prog.partition(" ")[2]
        self.exit(EXIT_USAGE, f"edgeguard: error: {command + ': ' if command else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .bench.cli import add_bench_parser
    from .detect.cli import add_profile_parser, add_seal_arguments

    parser = _ArgumentParser(
        prog="edgeguard",
        description="Seal ML models for edge devices, verify them, and run them from locked memory.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=fn)
        return p

    p = add("keygen", "generate a signing key (ed25519, p256) or a device key (x25519, p256)", cmd_keygen)
    p.add_argument("--type", choices=("ed25519", "p256", "x25519"), required=True)
    p.add_argument("-o", "--output", required=True, help="private key file (PKCS#8 PEM, created 0600)")
    p.add_argument("--public", help="public key file (default: OUTPUT.pub)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("seal", "encrypt, sign and wrap a model for one or more devices", cmd_seal)
    p.add_argument("model", help="ONNX model, safetensors file, or any file (sealed raw)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--sign", required=True, metavar="KEY", help="publisher signing key (ed25519 or p256)")
    p.add_argument("--recipient", action="append", default=[], metavar="PUB", help="device public key (x25519 or p256); repeatable")
    p.add_argument("--passphrase", action="store_true", help=f"seal to a passphrase instead (asked on the terminal or taken from ${PASSPHRASE_ENV})")
    p.add_argument("--cipher", choices=(*CIPHERS, "auto"), default="aes-256-gcm",
                   help="payload AEAD; chacha20-poly1305 suits ARM cores without AES instructions; auto picks from --target (or this machine)")
    p.add_argument("--target", metavar="JSON", help="with --cipher auto: the target device's `edgeguard bench` results (or its fingerprint)")
    p.add_argument("--chunk-size", type=parse_size, default=DEFAULT_CHUNK_SIZE, help="power of two, 4K..64M (default 1M)")
    p.add_argument("--name", help="model name (default: the file name without extension)")
    p.add_argument("--model-version", type=int, default=1, metavar="N", help="monotonic version for anti-rollback (default 1)")
    p.add_argument("--not-before", type=parse_time, metavar="DATE")
    p.add_argument("--not-after", type=parse_time, metavar="DATE")
    p.add_argument("--label", type=parse_label, action="append", default=[], metavar="K=V")
    p.add_argument("--kind", choices=("onnx", "safetensors", "raw"), help="payload kind (default: from the file extension)")
    p.add_argument("--optimize", action="store_true", help="seal onnxruntime's offline (basic-level) optimization of the graph, for strict-mode devices")
    p.add_argument("--threads", type=parse_threads, default=0, help="worker threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--json", action="store_true")
    add_seal_arguments(p)

    p = add("verify", "check the publisher signature and every chunk (no decryption key needed)", cmd_verify)
    p.add_argument("sealed")
    p.add_argument("--trust", action="append", required=True, metavar="PUB", help="trusted publisher public key; repeatable")
    p.add_argument("--threads", type=parse_threads, default=0)
    p.add_argument("--json", action="store_true")

    p = add("inspect", "print the public header (verifies nothing, needs no key)", cmd_inspect)
    p.add_argument("sealed")
    p.add_argument("--json", action="store_true")

    p = add("unseal", "explicit recovery: verify, decrypt and write the original model", cmd_unseal)
    p.add_argument("sealed")
    p.add_argument("-o", "--output", required=True, help="never overwritten")
    p.add_argument("--identity", action="append", default=[], metavar="KEY", help="device private key; repeatable")
    p.add_argument("--passphrase", action="store_true")
    p.add_argument("--trust", action="append", required=True, metavar="PUB", help="trusted publisher public key; repeatable")
    p.add_argument("--threads", type=parse_threads, default=0)
    p.add_argument("--json", action="store_true")

    add("demo", "the whole flow: keygen, seal, verify, load on a device, and the extraction detector", cmd_demo)
    add_profile_parser(sub).set_defaults(func=cmd_profile)
    add_bench_parser(sub)
    return parser


def _error_code(exc: EdgeguardError) -> int:
    if isinstance(exc, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(exc, FormatError):
        return EXIT_FORMAT
    if isinstance(exc, (KeyFileError, NotARecipientError, UntrustedSignerError)):
        return EXIT_KEY
    if isinstance(exc, PolicyError):
        return EXIT_POLICY
    return EXIT_ERROR


_HINTS: dict[type, str] = {
    UntrustedSignerError: "pass the publisher's public key with --trust",
    NotARecipientError: "the file was sealed for other keys; `edgeguard inspect` lists its recipients' key ids",
    IntegrityError: "the file is corrupted or was tampered with; get a fresh copy from the publisher",
}


def _fail(message: str, hint: str | None, code: int) -> int:
    print(f"edgeguard: error: {message}", file=sys.stderr)
    if hint:
        print(f"edgeguard: hint: {hint}", file=sys.stderr)
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
        return _fail(message, None, EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", None, 130)


if __name__ == "__main__":
    sys.exit(main())
