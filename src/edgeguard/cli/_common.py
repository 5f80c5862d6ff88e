"""What every `edgeguard` subcommand shares: exit codes, CliError, option parsers, output helpers.

Human output passes through :func:`safe_text`: a sealed file's header is unauthenticated until
verified, and its names and labels must not reach an operator's terminal as escape sequences.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import KeyFileError
from ..format import (
    MAX_CHUNK_SIZE,
    MAX_INT,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_NAME_LENGTH,
    MIN_CHUNK_SIZE,
    Container,
    Header,
    Stanza,
)

EXIT_OK = 0
EXIT_ERROR = 1  # I/O and other failures
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_INTEGRITY = 3
EXIT_FORMAT = 4
EXIT_KEY = 5  # key file problems, untrusted signer, not a recipient
EXIT_POLICY = 6
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  success
  {EXIT_ERROR}  I/O or other error (missing file, output exists without --force, disk full, ...)
  {EXIT_USAGE}  bad command line (a bad option value, an output that is one of the inputs, ...)
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


def parse_chunk_size(text: str) -> int:
    """--chunk-size, checked against the format's limits here so that it is a usage error."""
    size = parse_size(text)
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE or size & (size - 1):
        raise argparse.ArgumentTypeError(
            f"must be a power of two in {MIN_CHUNK_SIZE >> 10}K..{MAX_CHUNK_SIZE >> 20}M, got {text!r}")
    return size


def _utf8_len(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:  # an argument that was not UTF-8 (Python's surrogateescape)
        raise argparse.ArgumentTypeError(f"not valid UTF-8: {text!r}") from None


def parse_name(text: str) -> str:
    if not 1 <= _utf8_len(text) <= MAX_NAME_LENGTH:
        raise argparse.ArgumentTypeError(f"a model name is 1..{MAX_NAME_LENGTH} bytes of UTF-8, got {_utf8_len(text)}")
    return text


def parse_version(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_INT:
        raise argparse.ArgumentTypeError(f"a model version is an integer in 0..{MAX_INT}, got {text!r}")
    return int(text)


def parse_threads(text: str) -> int:
    from ..seal import MAX_THREADS

    if not text.isdigit() or int(text) > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"threads is a number of worker threads in 0..{MAX_THREADS} (0: all cores), got {text!r}")
    return int(text)


def parse_time(text: str) -> int:
    """Unix seconds from `@SECONDS`, an ISO 8601 date or date-time (UTC unless an offset is given)."""
    if text.startswith("@") and text[1:].isdigit():
        seconds = int(text[1:])
    else:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a date: {text!r} (examples: 2027-01-31, 2027-01-31T12:00:00+01:00, @1800000000)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = int(when.timestamp())
    if not 0 <= seconds <= MAX_INT:
        raise argparse.ArgumentTypeError(f"{text!r} is before 1970 or too far in the future")
    return seconds


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a label is key=value, got {text!r}")
    if _utf8_len(key) > MAX_LABEL_KEY:
        raise argparse.ArgumentTypeError(f"a label key is at most {MAX_LABEL_KEY} bytes of UTF-8, got {_utf8_len(key)}")
    if _utf8_len(value) > MAX_LABEL_VALUE:
        raise argparse.ArgumentTypeError(f"a label value is at most {MAX_LABEL_VALUE} bytes of UTF-8, got {_utf8_len(value)}")
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


def safe_text(text: object) -> str:
    """`text` fit for a terminal: every character that is not printable (C0 and C1 controls, DEL,
    bidirectional overrides, a file name's undecodable bytes) becomes an escape such as ``\\x1b``.
    Printable Unicode is kept; a newline is escaped too, so apply it line by line."""
    out = []
    for ch in str(text):
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def safe_lines(text: str) -> str:
    return "\n".join(safe_text(line) for line in text.split("\n"))


def say(text: str = "", file: Any = None) -> None:
    """Prints human output (stdout by default) through :func:`safe_text`."""
    print(safe_lines(text), file=file or sys.stdout)


def warn(message: str) -> None:
    say(f"edgeguard: warning: {message}", file=sys.stderr)


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """`data` as JSON with --json (exact: json.dumps escapes controls itself), else `text`."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        say(text)


def describe(container: Container) -> dict[str, Any]:
    if container.version == 2:
        from .grants import describe_v2

        return describe_v2(container)
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
        "recipients": [_describe_stanza(s) for s in h.recipients],
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


def _describe_stanza(s: Stanza) -> dict[str, Any]:
    """A stanza's public, readable fields: its key id, or a passphrase's work factor (never salts)."""
    if s.key_id is not None:
        return {"type": s.type, "key_id": s.key_id}
    return {"type": s.type, **{k: v for k, v in s.params if isinstance(v, int)}}


def describe_text(info: dict[str, Any]) -> str:
    m = info["model"]
    lines = [
        f"model       {m['name']} version {m['version']} ({info['payload_kind']}, {info['payload_length']:,} bytes)",
        f"created     {m['created']}",
        f"valid       from {m['not_before'] or '-'} until {m['not_after'] or '-'}",
        f"cipher      {info['cipher']}, {info['chunk_count']} chunk(s) of {info['chunk_size']:,} bytes",
        f"signer      {info['signer']['alg']} key {info['signer']['key_id']}",
    ]
    v2 = info["format_version"] == 2
    if v2:
        from .grants import SHOWN_RECIPIENTS, describe_v2_lines

        lines += describe_v2_lines(info)
    for r in info["recipients"][: SHOWN_RECIPIENTS if v2 else None]:
        params = " ".join(f"{k} {v}" for k, v in r.items() if k not in ("type", "key_id"))
        lines.append(f"recipient   {r['type']} " + (f"key {r['key_id']}" if "key_id" in r else f"({r['type']} {params})"))
    if v2 and len(info["recipients"]) > SHOWN_RECIPIENTS:
        lines.append(f"recipient   ... and {len(info['recipients']) - SHOWN_RECIPIENTS:,} more (--json lists them all)")
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
# output files, key files and validity


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # st_dev and st_ino: through symlinks and hard links too
    except OSError:  # one of them does not exist (yet)
        return False


def check_outputs(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str] | None], *,
                  force: bool, exists_hint: str = "pass --force to replace it") -> None:
    """Refuses, before any long work, output paths that the command could not or must not write:
    one that is an input (the same file, whatever its name), two outputs that are one file, a
    directory, a missing or read-only directory, and an existing file unless `force`.

    Raises:
        CliError: EXIT_USAGE when an output is an input or another output, else EXIT_ERROR.
    """
    ins = [Path(p) for p in inputs if p is not None]
    seen: list[Path] = []
    for out in map(Path, outputs):
        for other in ins + seen:
            if out == other or _same_file(out, other):
                what = "input" if other in ins else "output"
                raise CliError(f"the output {out} is the same file as the {what} {other}",
                               hint="choose another output path", code=EXIT_USAGE)
        seen.append(out)
        if out.is_dir():
            raise CliError(f"{out} is a directory", hint="give the path of the file to write")
        parent = out.parent
        if not parent.is_dir():
            raise CliError(f"cannot write {out}: there is no directory {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CliError(f"cannot write {out}: the directory {parent} is not writable")
        if os.path.lexists(out) and not force:
            raise CliError(f"{out} already exists", hint=exists_hint)


_PEM_PRIVATE = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----")


def pem_kind(path: str | os.PathLike[str]) -> str | None:
    """"private" or "public" from a PEM file's type label, None when it is neither or unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if _PEM_PRIVATE.search(head):
        return "private"
    if _PEM_PUBLIC.search(head):
        return "public"
    return None


_T = TypeVar("_T")


def load_keys(load: Callable[[Any], _T], paths: Any, option: str, wants: str, whose: str) -> _T:
    """`load(paths)`, except that a public key given where a private one is needed (or the
    reverse) is reported as such, naming the file and the option, rather than as the loader's
    "not a PEM private key" (or its complaint about a public key's 0644 mode).

    `paths` is what `load` takes: one path, or a list (the first misplaced file is named).

    Raises:
        CliError: EXIT_KEY, a key of the wrong kind.
        KeyFileError: any other problem with a key file.
    """
    try:
        return load(paths)
    except KeyFileError:
        for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            kind = pem_kind(path)
            if kind is not None and kind != wants:
                raise CliError(f"{path} is a {kind} key; {option} needs {whose} {wants} key", code=EXIT_KEY) from None
        raise
