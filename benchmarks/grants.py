#!/usr/bin/env python3
"""Fleet grants (format version 2): how fast a publisher grants one artifact to N devices, how many
bytes each device adds to a grant, and what a device pays to find and check its own grant.

    python benchmarks/grants.py                       # 10,000 devices, X25519 and P-256
    python benchmarks/grants.py --full                # also 100,000 devices
    python benchmarks/grants.py --devices 1000 -o results/grants.json

Everything runs in this one process on one core (no threads). Device key generation is set up
before the clock starts. Measured per device key type:

* ``grant_s``: one multi-device grant for N devices (HPKE per device, one signature), and
  ``grants_per_s``; ``per_device_grants_s``: N one-device grants (one signature each), in memory;
  ``folder_write_s``: writing those N files (each fsynced) into a folder, atomically;
* ``bytes_per_device``: what each added device costs in a multi-device grant, and
  ``per_device_grant_bytes``: the size of a one-device grant file;
* ``lookup``: a device finding its grant in a folder of N per-device grants (open its
  ``<key_id>.grant``, parse, verify the signature, find its stanza) next to the same in a folder of
  100 (O(1): the two should match), and reading the N-device grant file the same way.

Goals (docs/benchmarks.md): 10,000 grants < 2 s and 100,000 < 20 s on one core, <= 256 B per
device, O(1) lookup. The JSON says which were met (``goals``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeguard.format import ModelInfo
from edgeguard.grants import issue_device_grants, issue_grant, load_grant, unlock, verify_grant, write_grant_folder
from edgeguard.keys import SigningKey, TrustStore, generate_private_key, key_id
from edgeguard.payload import build_payload
from edgeguard.recipients.p256 import P256Identity, P256Recipient
from edgeguard.recipients.x25519 import X25519Identity, X25519Recipient
from edgeguard.seal import seal_payload

KINDS = {"x25519": (X25519Recipient, X25519Identity), "p256": (P256Recipient, P256Identity)}
GOAL_S = {10_000: 2.0, 100_000: 20.0}
GOAL_BYTES = 256
LOOKUP_REPS = 200


def _median_time(fn: Callable[[], Any], reps: int) -> float:
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _lookup(folder: Path, kid: str, trust: TrustStore) -> None:
    grant = load_grant(folder, [kid])
    verify_grant(grant, trust)
    assert grant.body.stanza_for(kid) is not None


def measure(kind: str, n: int, tmp: Path, *, folders: bool) -> dict[str, Any]:
    recipient_cls, _identity_cls = KINDS[kind]
    signer = SigningKey.generate("ed25519")
    trust = TrustStore([signer.verifying_key])
    issuer = generate_private_key("x25519")
    issuer_id = X25519Identity(issuer, key_id(issuer.public_key()))
    artifact = tmp / f"{kind}-{n}.sealed"
    seal_payload(build_payload("raw", [("data", os.urandom(4096))]), artifact, kind="raw", signer=signer,
                 recipients=[X25519Recipient(issuer.public_key(), issuer_id.key_id)],
                 model=ModelInfo("bench", 1, int(time.time())), format_version=2)  # fmt: skip
    unlocked = unlock(artifact, issuer_id, trust)

    t = time.perf_counter()
    publics = [generate_private_key(kind).public_key() for _ in range(n)]
    recipients = [recipient_cls(p, key_id(p)) for p in publics]
    keygen_s = time.perf_counter() - t

    t = time.perf_counter()
    grant = issue_grant(unlocked, recipients, signer)
    grant_s = time.perf_counter() - t
    one = issue_grant(unlocked, recipients[:1], signer)
    fleet_file = tmp / f"{kind}-{n}.grant"
    fleet_file.write_bytes(grant.to_bytes())
    kid = recipients[n // 2].key_id
    read_fleet_s = _median_time(lambda: _lookup(fleet_file, kid, trust), 3)
    out: dict[str, Any] = {
        "key_type": kind,
        "devices": n,
        "keygen_s_setup": round(keygen_s, 4),
        "grant_s": round(grant_s, 4),
        "grants_per_s": round(n / grant_s),
        "us_per_device": round(grant_s / n * 1e6, 1),
        "grant_bytes": len(grant),
        "bytes_per_device": round((len(grant) - len(one)) / (n - 1), 2),
        "single_device_grant_bytes": len(one),
        "read_fleet_grant_s": round(read_fleet_s, 4),
    }
    if folders:
        t = time.perf_counter()
        per_device = issue_device_grants(unlocked, recipients, signer)
        out["per_device_grants_s"] = round(time.perf_counter() - t, 4)
        out["per_device_grant_bytes"] = len(next(iter(per_device.values())))
        t = time.perf_counter()
        big = write_grant_folder(per_device, tmp / f"{kind}-{n}-grants")
        out["folder_write_s"] = round(time.perf_counter() - t, 4)
        small = write_grant_folder({k: per_device[k] for k in list(per_device)[:100]}, tmp / f"{kind}-{n}-grants-100")
        small_kid = next(iter(per_device))
        out["lookup"] = {
            "folder_of_n_s": round(_median_time(lambda: _lookup(big, kid, trust), LOOKUP_REPS), 7),
            "folder_of_100_s": round(_median_time(lambda: _lookup(small, small_kid, trust), LOOKUP_REPS), 7),
            "fleet_grant_file_s": round(read_fleet_s, 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, action="append", help="fleet size; repeatable (default 10000, and 100000 with --full)")
    parser.add_argument("--full", action="store_true", help="also measure 100,000 devices")
    parser.add_argument("--types", default="x25519,p256", help="comma-separated device key types (x25519, p256)")
    parser.add_argument("--no-folders", action="store_true", help="skip the per-device grants and the folder lookups")
    parser.add_argument("-o", "--output", help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    sizes = args.devices or ([10_000, 100_000] if args.full else [10_000])
    if min(sizes) < 2:
        parser.error("--devices must be at least 2")
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeguard-grants-") as tmp_name:
        for kind in args.types.split(","):
            if kind not in KINDS:
                parser.error(f"unknown key type {kind!r}")
            for n in sizes:
                r = measure(kind, n, Path(tmp_name), folders=not args.no_folders and n <= 10_000)
                print(f"{kind:>6} {n:>7,} devices: grant {r['grant_s']:.2f} s ({r['grants_per_s']:,}/s), "
                      f"{r['bytes_per_device']} B/device" + (f", folder lookup {r['lookup']['folder_of_n_s'] * 1e6:.0f} us "
                      f"(100: {r['lookup']['folder_of_100_s'] * 1e6:.0f} us)" if "lookup" in r else ""), file=sys.stderr)  # fmt: skip
                results.append(r)
    goals = []
    for r in results:
        limit = GOAL_S.get(r["devices"])
        if limit is not None:
            goals.append({"goal": f"{r['devices']:,} {r['key_type']} grants < {limit:g} s", "measured_s": r["grant_s"], "met": r["grant_s"] < limit})
        goals.append({"goal": f"{r['key_type']} <= {GOAL_BYTES} B/device", "measured": r["bytes_per_device"], "met": r["bytes_per_device"] <= GOAL_BYTES})
        if "lookup" in r:
            ratio = r["lookup"]["folder_of_n_s"] / r["lookup"]["folder_of_100_s"]
            goals.append({"goal": f"{r['key_type']} O(1) lookup in a folder of {r['devices']:,}", "ratio_to_folder_of_100": round(ratio, 2), "met": ratio < 2})
    doc = {"benchmark": "edgeguard grants", "python": platform.python_version(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "threads": 1, "results": results, "goals": goals}  # fmt: skip
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
