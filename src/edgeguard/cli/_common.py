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
from typing import Any, Callable

from ..format import Container, Header, Stanza

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
    from ..seal import MAX_THREADS

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
    for r in info["recipients"]:
        params = " ".join(f"{k} {v}" for k, v in r.items() if k not in ("type", "key_id"))
        lines.append(f"recipient   {r['type']} " + (f"key {r['key_id']}" if "key_id" in r else f"({r['type']} {params})"))
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
