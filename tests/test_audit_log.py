"""The tamper-evident audit log (docs/audit.md): round trips under each checkpoint key, every kind
of edit detected, truncation at every byte offset, SIGKILLed writers, a slow disk, rotation,
resume, and what the runtime and the guard record."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeguard.audit import AuditLog, CheckpointVerifier, HmacSigner, PemSigner, load_anchors, segment_paths, verify_log
from edgeguard.audit._format import LEN, MAGIC, chain_next
from edgeguard.audit.reader import parse_segment
from edgeguard.keys import export_private_pem, generate_private_key, public_pem

MAC = b"m" * 32


def keypair(kind: str) -> tuple[bytes, bytes]:
    k = generate_private_key(kind)
    return export_private_pem(k), public_pem(k.public_key())


@pytest.fixture(scope="module")
def ed() -> tuple[bytes, bytes]:
    return keypair("ed25519")


def write_log(path: Path, key: Any, n: int = 12, every: int = 4, close: bool = True, **kw: Any) -> AuditLog:
    log = AuditLog(path, key=key, checkpoint_every=every, threaded=False, events=["model.load"], **kw)
    for i in range(n):
        log.record("model.load", {"i": i})
    if close:
        log.close()
    return log


def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, end) of every frame."""
    out, pos = [], len(MAGIC)
    while pos < len(data):
        (n,) = LEN.unpack_from(data, pos)
        out.append((pos, pos + 4 + n + 32))
        pos += 4 + n + 32
    return out


def rechain(data: bytes, start_frame: int = 0) -> bytes:
    """What an attacker without the key can do: recompute every chain hash from `start_frame` on."""
    spans = frames(data)
    out = bytearray(data[: spans[start_frame][0]])
    prev = data[spans[start_frame - 1][1] - 32 : spans[start_frame - 1][1]] if start_frame else None
    for a, b in spans[start_frame:]:
        body = data[a + 4 : b - 32]
        if prev is None:
            prev = bytes.fromhex(json.loads(body)["data"]["prev_chain"])
        prev = chain_next(prev, body)
        out += data[a : b - 32] + prev
    return bytes(out)


@pytest.mark.parametrize("kind", ["ed25519", "p256", "hmac"])
def test_round_trip_under_each_key(tmp_path: Path, kind: str) -> None:
    if kind == "hmac":
        key, verifier, kw = None, CheckpointVerifier(HmacSigner(MAC)), {"mac_key": MAC}
    else:
        priv, pub = keypair(kind)
        key, verifier, kw = priv, CheckpointVerifier(pub), {}
    log = AuditLog(tmp_path / "a.log", key=key, checkpoint_every=5, events="all", **kw)
    for i in range(40):
        assert log.record("model.load", {"i": i})
    assert log.flush()
    log.close()
    r = verify_log(tmp_path / "a.log", verifier)
    assert r.ok, r.problem
    loads = [x.data["i"] for x in r.records if x.type == "model.load"]
    assert loads == list(range(40))
    assert r.closed_cleanly and r.unsigned_tail == 0 and r.signed_through == r.records[-2].seq
    assert r.checkpoints >= 8 and r.key_alg == verifier.alg
    other = CheckpointVerifier(keypair("ed25519")[1]) if kind != "ed25519" else CheckpointVerifier(HmacSigner(b"x" * 32))
    assert "not the given key" in str(verify_log(tmp_path / "a.log", other).problem)
    assert (tmp_path / "a.log").stat().st_mode & 0o777 == 0o600


def test_every_edit_deletion_reorder_and_splice_is_detected(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    priv, pub = ed
    v = CheckpointVerifier(pub)
    write_log(tmp_path / "a.log", priv)
    write_log(tmp_path / "b.log", priv)
    a, b = (tmp_path / "a.log").read_bytes(), (tmp_path / "b.log").read_bytes()
    spans = frames(a)
    bad = tmp_path / "bad.log"

    def check(data: bytes, what: str) -> None:
        bad.write_bytes(data)
        r = verify_log(bad, v)
        assert not r.ok, what

    for i in range(len(a)):  # every single-byte edit, anywhere
        if i < len(MAGIC) or any(s <= i < e for s, e in spans):
            check(a[:i] + bytes([a[i] ^ 0x01]) + a[i + 1 :], f"byte {i}")
    for k in range(1, len(spans) - 1):  # delete one record
        check(a[: spans[k][0]] + a[spans[k][1] :], f"delete {k}")
        check(rechain(a[: spans[k][0]] + a[spans[k][1] :], k), f"delete {k}, chain recomputed")
    for k in range(1, len(spans) - 1):  # swap neighbours
        s0, s1 = spans[k], spans[k + 1]
        check(a[: s0[0]] + a[s1[0] : s1[1]] + a[s0[0] : s0[1]] + a[s1[1] :], f"swap {k}")
    bspans = frames(b)
    for k in range(2, len(spans)):  # splice: the head of one log, the tail of another
        check(a[: spans[k][0]] + b[bspans[k][0] :], f"splice at {k}")
        check(rechain(a[: spans[k][0]] + b[bspans[k][0] :], k), f"splice at {k}, chain recomputed")
    # An attacker without the key rewrites a record inside the signed range and recomputes the chain.
    k = 3
    body = a[spans[k][0] + 4 : spans[k][1] - 32].replace(b'"i":1', b'"i":7')
    forged = a[: spans[k][0]] + struct.pack(">I", len(body)) + body + bytes(32) + a[spans[k][1] :]
    check(rechain(forged, k), "rewrite with recomputed chain")
    # Stripping every checkpoint (and recomputing the chain) is detected: a segment opens with one.
    kept = [s for s in spans if b'"type":"checkpoint"' not in a[s[0] : s[1]]]
    check(rechain(a[: len(MAGIC)] + b"".join(a[s:e] for s, e in kept)), "checkpoints stripped")
    assert verify_log(tmp_path / "a.log", v).ok


def test_what_is_not_detectable_after_the_last_checkpoint(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    """Records after the last checkpoint are chained but vouched for by no key: an attacker who can
    write the file may rewrite or drop them undetected; the report counts them as unsigned."""
    priv, pub = ed
    log = write_log(tmp_path / "a.log", priv, n=10, every=4, close=False)
    log._write_pending(sync=True)
    data = (tmp_path / "a.log").read_bytes()
    spans = frames(data)
    r = verify_log(tmp_path / "a.log", CheckpointVerifier(pub))
    assert r.ok and r.unsigned_tail == 2 and not r.closed_cleanly
    last = spans[-1]
    body = data[last[0] + 4 : last[1] - 32].replace(b'"i":9', b'"i":5')
    (tmp_path / "a.log").write_bytes(rechain(data[: last[0]] + struct.pack(">I", len(body)) + body + bytes(32), len(spans) - 1))
    r = verify_log(tmp_path / "a.log", CheckpointVerifier(pub))
    assert r.ok and r.records[-1].data == {"i": 5} and r.unsigned_tail == 2  # undetectable, but reported as unvouched
    # The live writer's next checkpoint covers its own chain, not the rewritten file's: detected.
    log.checkpoint()
    log.close()
    assert "does not match the hash chain" in str(verify_log(tmp_path / "a.log", CheckpointVerifier(pub)).problem)


def test_truncation_at_every_byte_offset(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    priv, pub = ed
    v = CheckpointVerifier(pub)
    write_log(tmp_path / "a.log", priv, n=10, every=3)
    data = (tmp_path / "a.log").read_bytes()
    ends = [e for _, e in frames(data)]
    opening = ends[1]  # log.open and its checkpoint are created atomically
    full = verify_log(tmp_path / "a.log", v)
    anchor = full.last_checkpoint
    cut = tmp_path / "cut.log"
    for n in range(len(data) + 1):
        cut.write_bytes(data[:n])
        r = verify_log(cut, v)
        complete = [e for e in ends if e <= n]
        if n < opening:
            assert not r.ok, n  # never silently "an empty log"
            continue
        assert r.ok, (n, r.problem)
        assert len(r.records) == len(complete) and r.torn_tail == n - complete[-1], n
        assert [x.seq for x in r.records] == list(range(len(complete)))
        same = [(x.seq, x.type, x.data, x.chain, x.offset) for x in full.records[: len(complete)]]
        assert [(x.seq, x.type, x.data, x.chain, x.offset) for x in r.records] == same  # the prefix, unaltered
        assert r.closed_cleanly == (n == len(data))
        # Only a checkpoint kept off the device tells a truncation from "fewer records were written".
        ra = verify_log(cut, v, [anchor])
        assert ra.ok == (n == len(data)), n
        if n < len(data) and r.torn_tail == 0:
            assert "truncated" in str(ra.problem)


@pytest.mark.slow  # about 30 s on two cores
def test_sigkilled_writers_always_leave_a_verifiable_prefix(tmp_path: Path) -> None:
    """1,000 writers killed at random moments (half threaded, half synchronous, fsync "never" and
    "always"): each log verifies up to its last complete record, every record is the one the
    writer meant (tick i holds i), and a torn tail is reported, never hidden."""
    script = textwrap.dedent("""
        import os, random, signal, sys, time
        from edgeguard.audit import AuditLog
        out, n = sys.argv[1], int(sys.argv[2])
        rng = random.Random(7)
        for k in range(n):
            path = os.path.join(out, f"{k}.log")
            pid = os.fork()
            if pid == 0:
                log = AuditLog(path, mac_key=b"m" * 32, checkpoint_every=rng.choice([3, 50]), events=["tick"],
                               threaded=k % 2 == 0, fsync="always" if k % 10 == 0 else "never", flush_interval_s=0.001)
                i = 0
                while True:
                    log.record("tick", {"i": i}); i += 1
            time.sleep(rng.uniform(0.004, 0.03))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        print("ok")
    """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), "1000"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr
    v = CheckpointVerifier(HmacSigner(MAC))
    outcomes = {"verified": 0, "torn": 0, "never_created": 0}
    for k in range(1000):
        path = tmp_path / f"{k}.log"
        if not path.exists():  # killed before the segment was linked into place
            outcomes["never_created"] += 1
            continue
        r = verify_log(path, v)
        assert r.ok, (k, r.problem)
        ticks = [x.data["i"] for x in r.records if x.type == "tick"]
        assert ticks == list(range(len(ticks))), k
        outcomes["torn" if r.torn_tail else "verified"] += 1
        if r.torn_tail:
            assert parse_segment(path).end + r.torn_tail == path.stat().st_size
    elapsed = time.monotonic() - start
    print(f"\n1000 SIGKILLed writers in {elapsed:.1f} s: {outcomes}")
    assert outcomes["verified"] + outcomes["torn"] > 700  # the rest were killed before the log existed


def test_resume_cuts_a_torn_tail_and_says_so(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    priv, pub = ed
    write_log(tmp_path / "a.log", priv, n=6)
    data = (tmp_path / "a.log").read_bytes()
    (tmp_path / "a.log").write_bytes(data + data[len(MAGIC) : len(MAGIC) + 30])  # a torn frame
    write_log(tmp_path / "a.log", priv, n=3)
    r = verify_log(tmp_path / "a.log", CheckpointVerifier(pub))
    assert r.ok and r.closed_cleanly and r.torn_tail == 0
    resume = next(x for x in r.records if x.type == "log.resume")
    assert resume.data["torn_tail_bytes"] == 30 and resume.data["after_clean_close"] is True
    # A damaged log is not appended to: it is kept aside and a new log starts.
    bad = bytearray((tmp_path / "a.log").read_bytes())
    bad[40] ^= 1
    (tmp_path / "a.log").write_bytes(bad)
    write_log(tmp_path / "a.log", priv, n=1)
    assert [p for p in os.listdir(tmp_path) if ".retired-" in p]
    assert verify_log(tmp_path / "a.log", CheckpointVerifier(pub)).ok


def test_rotation_links_segments_and_detects_a_missing_one(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    priv, pub = ed
    v = CheckpointVerifier(pub)
    log = AuditLog(tmp_path / "r.log", key=priv, max_bytes=4096, keep=3, threaded=False, events=["model.load"])
    for i in range(200):
        log.record("model.load", {"i": i, "pad": "x" * 40})
    log.close()
    segs = segment_paths(tmp_path / "r.log")
    assert len(segs) == 4
    r = verify_log(segs, v)
    assert r.ok and r.first_seq > 0 and r.closed_cleanly  # older segments were rotated away (retention)
    ticks = [x.data["i"] for x in r.records if x.type == "model.load"]
    assert ticks == list(range(ticks[0], 200))
    r = verify_log([segs[0], segs[2], segs[3]], v)
    assert "missing" in str(r.problem)
    assert verify_log(segs[2:], v).ok  # a later stretch alone verifies
    other = tmp_path / "o.log"
    write_log(other, priv)
    assert "another log" in str(verify_log([*segs, other], v).problem)


def test_a_full_queue_drops_with_a_counter_and_never_blocks_past_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(tmp_path / "q.log", mac_key=MAC, queue_size=16, max_block_ms=2, events=["model.load"])
    real_write = os.write

    def slow_write(fd: int, data: Any) -> int:
        time.sleep(0.2)  # a disk that takes 200 ms per write
        return real_write(fd, data)

    monkeypatch.setattr("edgeguard.audit.log.os.write", slow_write)
    worst = 0.0
    for i in range(300):
        t = time.perf_counter()
        log.record("model.load", {"i": i})
        worst = max(worst, time.perf_counter() - t)
    assert worst < 0.05, worst  # max_block_ms plus scheduling, never the disk's 200 ms
    assert log.dropped > 200
    monkeypatch.setattr("edgeguard.audit.log.os.write", real_write)
    log.close()
    r = verify_log(tmp_path / "q.log", CheckpointVerifier(HmacSigner(MAC)))
    assert r.ok
    dropped = [x.data for x in r.records if x.type == "audit.dropped"]
    assert sum(d["count"] for d in dropped) == log.dropped
    kept = [x.data["i"] for x in r.records if x.type == "model.load"]
    assert len(kept) + log.dropped == 300 and kept == sorted(kept)


def test_guard_alerts_are_logged_with_pseudonyms_and_no_inputs(tmp_path: Path) -> None:
    from _detect_world import World, build_profile
    from edgeguard import Guard

    world = World()
    log = AuditLog(tmp_path / "g.log", mac_key=MAC, client_salt=b"s" * 16)
    guard = Guard(build_profile(world), audit=log)
    x = world.benign(20, np.random.default_rng(2)) * 10.0
    for row in x:
        guard.observe("prober", row[None], [world.predict(row)])
    log.close()
    raw = (tmp_path / "g.log").read_bytes()
    r = verify_log(tmp_path / "g.log", CheckpointVerifier(HmacSigner(MAC)))
    alerts = [x.data for x in r.records if x.type == "detector.alert"]
    assert len(alerts) == 1 and alerts[0]["client"] == log.pseudonym("prober") and alerts[0]["client"].startswith("hmac:")
    assert alerts[0]["mitre_atlas"] == ["AML.T0024.002", "AML.T0040"] and alerts[0]["signals"][0]["signal"] == "invalid"
    assert alerts[0]["action"] == "alert" and b"prober" not in raw
    assert not [x for x in r.records if x.type == "guard.decision"]  # opt-in
    for row in x[:3]:  # no raw input bytes or values reach the log
        assert row.tobytes() not in raw and f"{row[0]:.4f}".encode() not in raw


def test_runtime_records_loads_refusals_and_rollback_updates(tmp_path: Path) -> None:
    import edgeguard
    from edgeguard.errors import RollbackError, UntrustedSignerError
    from runtime_support import make_keys, make_mlp, seal

    keys = make_keys(tmp_path)
    model = make_mlp(tmp_path / "m.onnx", widths=(8, 16, 3))
    v1 = seal(model, tmp_path / "v1.sealed", keys, version=1)
    v2 = seal(model, tmp_path / "v2.sealed", keys, version=2)
    priv, pub = keypair("p256")
    log = AuditLog(tmp_path / "dev.log", key=priv)
    store = tmp_path / "versions.json"
    with edgeguard.InferenceSession(v2, identity=keys.identity_path, trust=keys.trust_path, audit=log, version_store=store):
        pass
    with pytest.raises(RollbackError):
        edgeguard.InferenceSession(v1, identity=keys.identity_path, trust=keys.trust_path, audit=log, version_store=store)
    with pytest.raises(UntrustedSignerError):
        edgeguard.InferenceSession(v2, identity=keys.identity_path, trust=keypair("ed25519")[1], audit=log)
    log.close()
    with edgeguard.InferenceSession(v2, identity=keys.identity_path, trust=keys.trust_path, audit=tmp_path / "own.log"):
        pass  # a path: the session owns the log and closes it
    assert verify_log(tmp_path / "own.log").closed_cleanly
    r = verify_log(tmp_path / "dev.log", CheckpointVerifier(pub))
    assert r.ok
    events = [(x.type, x.data) for x in r.records if not x.type.startswith(("log.", "checkpoint"))]
    assert [t for t, _ in events] == ["rollback.update", "model.load", "model.refused", "model.refused"]
    load = events[1][1]
    import hashlib

    from edgeguard.unseal import inspect_file

    c = inspect_file(v2)
    assert load["header_digest"] == hashlib.sha256(c.preamble_and_header).hexdigest() and load["version"] == 2
    assert load["signer"]["key_id"] == keys.signer.key_id and load["mode"] == "strict" and load["model"] == "m"
    assert events[0][1] == {"model": "m", "version": 2, "previous": None, "store": "versions.json"}
    assert events[2][1]["error"] == "RollbackError" and events[3][1]["error"] == "UntrustedSignerError"


def test_anchors_detect_truncation_and_rewrites(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    priv, pub = ed
    shipped: list[dict[str, Any]] = []
    log = AuditLog(tmp_path / "a.log", key=priv, checkpoint_every=4, threaded=False, events=["model.load"], on_checkpoint=shipped.append)
    for i in range(10):
        log.record("model.load", {"i": i})
    log.close()
    (tmp_path / "anchors.jsonl").write_text("".join(json.dumps(a) + "\n" for a in shipped))
    anchors = load_anchors(tmp_path / "anchors.jsonl")
    v = CheckpointVerifier(pub)
    assert verify_log(tmp_path / "a.log", v, anchors).ok
    # root with the key re-signs a shortened history: the exported anchors still catch it
    data = (tmp_path / "a.log").read_bytes()
    spans = frames(data)
    (tmp_path / "short.log").write_bytes(data[: spans[6][0]])
    assert "truncated" in str(verify_log(tmp_path / "short.log", v, anchors).problem)


def test_pem_signer_refuses_an_x25519_key() -> None:
    from edgeguard.errors import KeyFileError

    with pytest.raises(KeyFileError):
        PemSigner(keypair("x25519")[0])
    with pytest.raises(KeyFileError):
        HmacSigner(b"short")


def test_audit_cli(tmp_path: Path, ed: tuple[bytes, bytes]) -> None:
    from test_cli import cli, failed

    priv, pub = ed
    (tmp_path / "k.pub").write_bytes(pub)
    write_log(tmp_path / "a.log", priv)
    r = cli("audit", "verify", tmp_path / "a.log", "--key", tmp_path / "k.pub", "--json")
    assert r.code == 0 and r.json()["ok"] and r.json()["closed_cleanly"]
    r = cli("audit", "show", tmp_path / "a.log", "--key", tmp_path / "k.pub", "--type", "model.load", "--json")
    assert r.code == 0 and [x["data"]["i"] for x in r.json()["records"]] == list(range(12))
    r = cli("audit", "export", tmp_path / "a.log", "--format", "otel")
    lines = [json.loads(x) for x in r.out.splitlines()]
    assert r.code == 0 and lines[0]["eventName"] == "edgeguard.log.open" and int(lines[0]["timeUnixNano"]) > 0
    r = cli("audit", "export", tmp_path / "a.log", "-o", tmp_path / "a.jsonl", "--key", tmp_path / "k.pub", "--json")
    assert r.code == 0 and r.json()["records"] == len((tmp_path / "a.jsonl").read_text().splitlines())
    r = cli("audit", "verify", tmp_path / "a.log", "--key", tmp_path / "k.pub", "--anchor", tmp_path / "a.jsonl")
    assert r.code == 0 and "anchors:" in r.out
    data = bytearray((tmp_path / "a.log").read_bytes())
    data[60] ^= 1
    (tmp_path / "a.log").write_bytes(data)
    failed(cli("audit", "verify", tmp_path / "a.log", "--key", tmp_path / "k.pub"), 3, "not intact")
    failed(cli("audit", "verify", tmp_path / "a.log"), 2)
    failed(cli("audit", "verify", tmp_path / "missing.log", "--key", tmp_path / "k.pub"), 1, "no such audit log")


@pytest.mark.native_process  # the token module is a host library
def test_checkpoints_signed_on_a_pkcs11_token(token: dict[str, Any], tmp_path: Path) -> None:
    from edgeguard.audit import Pkcs11Signer

    uri = f"pkcs11:token=edge-device;object=edgeguard-device?module-path={token['module']}&pin-value=1234"
    signer = Pkcs11Signer(uri)
    log = AuditLog(tmp_path / "t.log", key=signer, checkpoint_every=3, threaded=False, events=["model.load"])
    for i in range(7):
        log.record("model.load", {"i": i})
    log.close()
    r = verify_log(tmp_path / "t.log", CheckpointVerifier(token["public_key"]))
    assert r.ok and r.key_alg == "ecdsa-p256-sha256" and r.checkpoints >= 4 and r.closed_cleanly
    assert "1234" not in repr(signer) and "1234" not in (tmp_path / "t.log").read_text(errors="replace")
