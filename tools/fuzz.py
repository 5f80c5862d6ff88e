#!/usr/bin/env python3
"""Fuzz edgeguard's readers: the container parser, verify, open, the stanza unwrap and the inner
payload parser behind the signature and the AEAD (docs/security-testing.md, "Fuzzing").

    python tools/fuzz.py --target all --seconds 600 --seed 1          # the long run
    python tools/fuzz.py --target inner --iterations 2000 --engine python
    python tools/fuzz.py --replay fuzz-findings/open-1a2b3c4d5e6f.sealed --target open

Engines: ``atheris`` (coverage-guided libFuzzer over the Python code, used by default when the
``atheris`` package is installed) and ``python`` (a structured mutation fuzzer, deterministic for a
given ``--seed``; tests/test_fuzz.py runs it for a few seconds). Both drive the same mutators and
the same property checks: atheris feeds the mutators' decisions from its input bytes, so coverage
guidance steers which mutations are made.

The harness holds the test publisher's keys (fixed, derived from constant seeds, so a saved finding
replays anywhere): it re-signs mutated headers and chunks, wraps content keys anew, and seals
mutated inner payloads with :func:`edgeguard.seal.seal_payload` directly, so the code behind the
signature and the AEAD is reached, which an attacker without the publisher's key cannot do.

Each finding is written to ``--findings`` (default ``fuzz-findings/``) as the concrete sealed file
plus a ``.txt`` with the property that failed and the traceback; the run exits 1 if any finding is
new. Findings listed in KNOWN (each with a strict-xfail test that reproduces it) are counted and
saved but do not fail the run.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import io
import json
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # the reference decoder lives with the tests

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519  # noqa: E402

import reference_decoder as ref  # noqa: E402
from edgeguard.errors import (  # noqa: E402
    EdgeguardError,
    FormatError,
    IntegrityError,
    NotARecipientError,
    UnsupportedVersionError,
    UntrustedSignerError,
)
from edgeguard.format import (  # noqa: E402
    PREAMBLE,
    ModelInfo,
    canonical_json,
    read_container,
)
from edgeguard.keys import SigningKey, TrustStore, export_private_pem, public_pem  # noqa: E402
from edgeguard.payload import build_payload, parse_payload, tensor_entries  # noqa: E402
from edgeguard.recipients import load_identity, load_recipient  # noqa: E402
from edgeguard.recipients.scrypt import PassphraseIdentity, PassphraseRecipient  # noqa: E402
from edgeguard.seal import seal_payload  # noqa: E402
from edgeguard.unseal import decrypt_file, unseal_file, verify_file  # noqa: E402

TARGETS = ("parse", "verify", "open", "unwrap", "inner")
CHUNK = 4096
PASSPHRASE = "fuzz passphrase"
MAX_LOG_N = 12  # a re-signed header may ask for scrypt 2^22 (4 GiB): both decoders refuse above this
MODEL = ModelInfo(name="fuzz", version=1, created=1_700_000_000, labels=(("k", "v"),))
CATEGORY = {
    FormatError: "format",
    UnsupportedVersionError: "version",
    UntrustedSignerError: "untrusted",
    NotARecipientError: "not_recipient",
    IntegrityError: "integrity",
}

# Findings that are understood and reproduced by a strict-xfail test; they are still counted and
# saved, but a run that finds only these exits 0. Remove an entry when its bug is fixed (the xfail
# test then passes and fails the suite, as a reminder).
KNOWN: dict[str, str] = {}


@dataclasses.dataclass
class Finding:
    """A property that failed. `signature` groups findings of one cause (for dedup and KNOWN)."""

    signature: str
    detail: str = ""


# --- keys: fixed, so that a saved finding replays with the same trust store and identities -------


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"edgeguard fuzz key/" + label.encode()).digest()


def _p256(label: str) -> ec.EllipticCurvePrivateKey:
    n = ref.P256_N
    return ec.derive_private_key(int.from_bytes(_secret(label), "big") % (n - 1) + 1, ec.SECP256R1())


# --- sources of decisions: a seeded PRNG, or atheris' FuzzedDataProvider ---------------------------


class RandomSource:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)


class FdpSource:
    """Decisions read from the fuzzer's input; past its end every choice is the first one."""

    def __init__(self, fdp: Any) -> None:
        self.fdp = fdp

    def int(self, lo: int, hi: int) -> int:
        return self.fdp.ConsumeIntInRange(lo, hi) if hi > lo else lo

    def bytes(self, n: int) -> bytes:
        b = self.fdp.ConsumeBytes(n)
        return b + bytes(n - len(b))


def pick(src: Any, seq: Sequence[Any]) -> Any:
    return seq[src.int(0, len(seq) - 1)]


def chance(src: Any, percent: int) -> bool:
    return src.int(0, 99) < percent


# --- the world: keys, seed payloads and seed files ------------------------------------------------


@dataclasses.dataclass
class Seed:
    name: str
    data: bytes
    kind: str
    dek: bytes


class World:
    """Keys, seed payloads and seed files; scratch files go under `tmp` (a fresh temporary
    directory, removed by close(), when none is given)."""

    def __init__(self, tmp: Path | None = None) -> None:
        self.ed = SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(_secret("publisher ed25519")))
        self.p256 = SigningKey(_p256("publisher p256"))
        self.signers = {s.key_id: s for s in (self.ed, self.p256)}
        self.trust = TrustStore([self.ed.verifying_key, self.p256.verifying_key])
        self.ref_trusted = [s._private_key.public_key() for s in (self.ed, self.p256)]
        self.xdev = x25519.X25519PrivateKey.from_private_bytes(_secret("device x25519"))
        self.pdev = _p256("device p256")
        xid, pid = (load_identity(export_private_pem(k)) for k in (self.xdev, self.pdev))
        self.xrec, self.prec = (load_recipient(public_pem(k.public_key())) for k in (self.xdev, self.pdev))
        self.device_ids = (xid.key_id, pid.key_id)
        self.identities = [xid, pid, PassphraseIdentity(PASSPHRASE, max_log_n=MAX_LOG_N)]
        self.ref_identities = [self.xdev, self.pdev, ref.Passphrase(PASSPHRASE, max_log_n=MAX_LOG_N)]
        self._dir = tempfile.TemporaryDirectory(prefix="edgeguard-fuzz-") if tmp is None else None
        self.tmp = Path(self._dir.name) if self._dir is not None else tmp
        self.payloads = self._payloads()
        raw_big, raw_small, st, onnx = (self.payloads.get(k) for k in ("raw-big", "raw-small", "safetensors", "onnx"))
        configs = [
            ("ed-x-p-aes-raw", raw_big, self.ed, [self.xrec, self.prec], "aes-256-gcm"),
            ("p256-x-chacha-raw", raw_small, self.p256, [self.xrec], "chacha20-poly1305"),
            ("ed-pass-chacha-raw", raw_small, self.ed, [PassphraseRecipient(PASSPHRASE, log_n=10)], "chacha20-poly1305"),
            ("ed-p-aes-safetensors", st, self.ed, [self.prec], "aes-256-gcm"),
            ("ed-x-chacha-onnx", onnx, self.ed, [self.xrec], "chacha20-poly1305"),
        ]
        self.seeds = []
        for name, payload, signer, recipients, cipher in configs:
            if payload is None:
                continue
            data = self.seal(payload[1], payload[0], signer=signer, recipients=recipients, cipher=cipher)
            c = read_container(io.BytesIO(data))
            dek = next(k for k in (i.unwrap(c.header.recipients, c.header.salt) for i in self.identities) if k)
            self.seeds.append(Seed(name, data, payload[0], dek))
        self.originals = {s.data for s in self.seeds}

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()

    def _payloads(self) -> dict[str, tuple[str, bytes, list[tuple[str, bytes]], tuple[Any, ...]]]:
        out: dict[str, Any] = {}

        def add(name: str, kind: str, sections: list[tuple[str, bytes]], tensors: tuple[Any, ...] = ()) -> None:
            out[name] = (kind, bytes(build_payload(kind, sections, tensors)), sections, tensors)

        add("raw-big", "raw", [("data", bytes(range(256)) * 20)])
        add("raw-small", "raw", [("data", b"small model"), ("detector_profile", b"{}")])
        header = b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
        add("safetensors", "safetensors", [("safetensors", struct.pack("<Q", len(header)) + header + bytes(range(16)))])
        try:
            import numpy as np
            import onnx
            from onnx import TensorProto, helper, numpy_helper

            from edgeguard.seal import build_model_payload

            w = numpy_helper.from_array(np.arange(256, dtype=np.float32).reshape(16, 16), "W")
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [w],
            )  # fmt: skip
            path = self.tmp / "seed.onnx"
            onnx.save_model(helper.make_model(graph), str(path))
            payload = build_model_payload(path, "onnx")
            layout = parse_payload(payload, "onnx")
            sections = [(n, bytes(layout.section(payload, n))) for n in ("graph", "weights")]
            out["onnx"] = ("onnx", bytes(payload), sections, layout.tensors)
        except ImportError:  # onnx is a seal-side extra: without it there is no onnx seed
            pass
        return out

    def seal(self, payload: bytes, kind: str, *, signer: SigningKey | None = None, recipients: Any = None,
             cipher: str = "aes-256-gcm") -> bytes:  # fmt: skip
        path = self.tmp / "sealing.sealed"
        seal_payload(payload, path, kind=kind, signer=signer or self.ed, recipients=recipients or [self.xrec],
                     model=MODEL, cipher=cipher, chunk_size=CHUNK, overwrite=True)  # fmt: skip
        return path.read_bytes()


# --- byte surgery (FORMAT.md "Layout") -------------------------------------------------------------


def header_len(data: bytes) -> int:
    return struct.unpack(">I", data[12:16])[0] if len(data) >= 16 else 0


def header_obj(data: bytes) -> Any:
    try:
        return json.loads(data[16 : 16 + header_len(data)])
    except (ValueError, RecursionError):
        return None


def chunks_loose(data: bytes) -> list[bytes]:
    hl, obj = header_len(data), header_obj(data)
    size = obj.get("chunk_size") if isinstance(obj, dict) else None
    body = data[112 + hl :]
    if type(size) is not int or not 1 <= size <= 1 << 26:
        return [body]
    return [body[i : i + size + 16] for i in range(0, len(body), size + 16)] or [b""]


def resign(w: World, data: bytes, chunks: list[bytes] | None = None) -> bytes:
    """What the publisher would write: these header bytes and chunks, with a fresh root and signature."""
    hl = header_len(data)
    if len(data) < 16 + hl:
        return data
    head = data[: 16 + hl]
    chunks = chunks_loose(data) if chunks is None else chunks
    root = hashlib.sha256(
        b"edgeguard/v1 chunks\x00" + struct.pack(">Q", len(chunks)) + b"".join(hashlib.sha256(c).digest() for c in chunks)
    ).digest()
    obj = header_obj(data)
    kid = obj.get("signer", {}).get("key_id") if isinstance(obj, dict) and isinstance(obj.get("signer"), dict) else None
    signer = w.signers.get(kid, w.ed) if isinstance(kid, str) else w.ed
    return head + root + signer.sign(hashlib.sha256(head).digest(), root) + b"".join(chunks)


def with_header(data: bytes, header: bytes) -> bytes:
    hl = header_len(data)
    return data[:12] + struct.pack(">I", len(header)) + header + data[16 + hl :]


# --- mutators ---------------------------------------------------------------------------------------

JSON_TOKENS = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"0", b"-1", b"1.0", b"1e3", b"null", b"true", b"NaN",
               b" ", b"\\u0000", b"\\ud800", b'"x":1,', b"\xff", b"9007199254740992", b"00", b"[" * 64]  # fmt: skip
BYTES8 = [0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x22, 0x5C]
U32 = [0, 1, 15, 16, 2**16, 2**20, 2**20 + 1, 2**31 - 1, 2**31, 2**32 - 1]
JSON_VALUES: list[Any] = [
    0, 1, -1, 9, 10, 12, 13, 22, 23, 63, 64, 4095, 4096, 8192, 2**26, 2**26 + 1, 2**53 - 1, 2**53, 2**64,
    True, False, None, "", "x", "\ud800", "0123456789abcdef", "aes-256-gcm", "chacha20-poly1305", "ed25519",
    "ecdsa-p256-sha256", "raw", "onnx", "safetensors", "scrypt", "hpke-x25519", "hpke-p256", "AAAA", "A" * 43 + "=",
    "graph", "weights", "data", "detector_profile", "float32", "bfloat16", "complex64", [], [0], [1, 2], {}, {"a": 1},
]  # fmt: skip
EXTRA_KEYS = ["extra", "key_id", "salt", "log_n", "not_before", "not_after", "labels", "offset", "kind", "type"]


def mutate_bytes(src: Any, data: bytes, others: Sequence[bytes], focus: tuple[int, int] | None = None) -> bytes:
    d = bytearray(data)
    for _ in range(src.int(1, 4)):
        lo, hi = focus if focus is not None and chance(src, 60) else (0, len(d))
        hi = max(lo, min(hi, len(d)))
        pos = src.int(lo, hi)
        op = src.int(0, 9)
        if op == 0 and pos < len(d):
            d[pos] ^= 1 << src.int(0, 7)
        elif op == 1 and pos < len(d):
            d[pos] = pick(src, BYTES8) if chance(src, 50) else src.int(0, 255)
        elif op == 2:
            d[pos:pos] = src.bytes(src.int(1, 16))
        elif op == 3:
            del d[pos : pos + src.int(1, 64)]
        elif op == 4:
            d[pos:pos] = pick(src, JSON_TOKENS)
        elif op == 5:
            tok = pick(src, JSON_TOKENS)
            d[pos : pos + len(tok)] = tok
        elif op == 6 and others:
            other = pick(src, others)
            d = d[:pos] + bytearray(other[src.int(0, len(other)) :])
        elif op == 7:
            del d[pos:]
        elif op == 8:
            d += src.bytes(src.int(1, 32))
        else:
            n = src.int(1, 64)
            d[pos:pos] = d[pos : pos + n]
    return bytes(d)


def mutate_preamble(src: Any, data: bytes) -> bytes:
    d = bytearray(data)
    field = src.int(0, 3)
    if field == 0:
        d[src.int(0, 7)] = src.int(0, 255)
    elif field in (1, 2):
        off = 8 if field == 1 else 10
        d[off : off + 2] = struct.pack(">H", pick(src, [0, 1, 2, 0x100, 0xFFFF]))
    else:
        hl = header_len(data)
        d[12:16] = struct.pack(">I", pick(src, U32 + [hl - 1, hl + 1, hl + 96, len(data)]) % 2**32)
    return bytes(d)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def mutate_json(src: Any, obj: Any, under: tuple[Any, ...] = ()) -> Any:
    """Sets, deletes, adds or nudges one value at a random path (below `under`, when it exists)."""
    paths = [p for p in _paths(obj) if p[: len(under)] == under] or _paths(obj)
    if not paths:
        return obj
    path = pick(src, paths)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = src.int(0, 4)
    if action == 0:
        parent[key] = json.loads(json.dumps(pick(src, JSON_VALUES)))  # a copy: no value is shared
    elif action == 1:
        del parent[key]
    elif action == 2:
        if isinstance(parent, dict):
            parent[pick(src, EXTRA_KEYS)] = json.loads(json.dumps(pick(src, JSON_VALUES)))
        else:
            parent.append(pick(src, JSON_VALUES) if chance(src, 50) else json.loads(json.dumps(pick(src, parent))))
    elif action == 3 and type(parent[key]) is int:
        parent[key] += pick(src, [-4096, -64, -1, 1, 64, 4096])
    elif isinstance(parent[key], list) and parent[key]:
        parent[key] = parent[key][::-1] if chance(src, 50) else parent[key] + parent[key][:1]
    else:
        parent[key] = json.loads(json.dumps(pick(src, JSON_VALUES)))
    return obj


# --- generators, one per target ---------------------------------------------------------------------


def gen_container(src: Any, w: World) -> tuple[bytes, bool]:
    """A mutated sealed file and whether the publisher (re)signed it."""
    seed = pick(src, w.seeds)
    data, hl = seed.data, header_len(seed.data)
    mode = src.int(0, 9)
    if mode <= 3:  # an attacker's edit, anywhere (biased to the header and signature block)
        return mutate_bytes(src, data, [s.data for s in w.seeds], (0, 112 + hl)), False
    if mode == 4:
        return mutate_preamble(src, data), False
    obj = header_obj(data)
    if mode <= 7:  # a header the publisher signs: canonical field edits, or raw header bytes
        for _ in range(src.int(1, 3)):
            obj = mutate_json(src, obj)
        header = canonical_json(obj) if chance(src, 80) else mutate_bytes(src, data[16 : 16 + hl], [])
        return resign(w, with_header(data, header), chunks_loose(data)), True
    chunks = chunks_loose(data)  # chunk edits, signed by the publisher or not
    i = src.int(0, len(chunks) - 1)
    op = src.int(0, 4)
    if op == 0 and chunks[i]:
        c = bytearray(chunks[i])
        c[src.int(0, len(c) - 1)] ^= 1 << src.int(0, 7)
        chunks[i] = bytes(c)
    elif op == 1 and len(chunks) > 1:
        del chunks[i]
    elif op == 2:
        chunks.insert(i, chunks[i])
    elif op == 3:
        j = src.int(0, len(chunks) - 1)
        chunks[i], chunks[j] = chunks[j], chunks[i]
    else:
        chunks[i] = chunks[i][: src.int(0, len(chunks[i]))]
    if chance(src, 50):
        return resign(w, data[: 16 + hl], chunks), True
    return data[: 112 + hl] + b"".join(chunks), False


def _x25519_points() -> list[bytes]:
    p = 2**255 - 19
    small = [0, 1, 325606250916557431795983626356110631294008115727848805560023387167927233504,
             39382357235489614581723060781553021112529911719440698176882885853963445705823, p - 1, p, p + 1]  # fmt: skip
    return [v.to_bytes(32, "little") for v in small] + [b"\xff" * 32]


X25519_POINTS = _x25519_points()
P256_POINTS = [bytes(65), b"\x04" + bytes(64), b"\x04" + b"\xff" * 64, b"\x02" + b"\x11" * 64, b"\x06" + b"\x22" * 64]


def gen_unwrap(src: Any, w: World) -> tuple[bytes, bool]:
    """Publisher-signed edits of the recipient stanzas and the file salt: reaches Identity.unwrap."""
    seed = pick(src, w.seeds[:4])
    data = seed.data
    obj = header_obj(data)
    salt = base64.b64decode(obj["salt"])
    for _ in range(src.int(1, 3)):
        stanzas = obj.get("recipients")
        if not isinstance(stanzas, list) or not any(isinstance(t, dict) for t in stanzas):
            break
        s = pick(src, [t for t in stanzas if isinstance(t, dict)])
        op = src.int(0, 9)
        try:
            wrapped = bytearray(base64.b64decode(s.get("wrapped"), validate=True))
        except (TypeError, ValueError):
            wrapped = bytearray(48)
        if op == 0 and wrapped:  # flip a bit of enc or of the ciphertext
            wrapped[src.int(0, len(wrapped) - 1)] ^= 1 << src.int(0, 7)
            s["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
        elif op == 1 and s.get("type") in ("hpke-x25519", "hpke-p256"):  # a degenerate or off-curve enc
            enc = pick(src, X25519_POINTS if s["type"] == "hpke-x25519" else P256_POINTS)
            s["wrapped"] = base64.b64encode(enc + bytes(wrapped[len(enc) :])).decode()
        elif op == 2:  # wrap a key anew: the right one, a wrong one, or for another file's salt
            which = src.int(0, 2)
            dek = seed.dek if which != 1 else src.bytes(32)
            ctx_salt = salt if which != 2 else src.bytes(32)
            rec = pick(src, [w.xrec, w.prec, PassphraseRecipient(PASSPHRASE, log_n=10)])
            new = rec.wrap(dek, ctx_salt).to_json()
            if new["type"] == "scrypt" or chance(src, 50):
                obj["recipients"] = [new]
            else:
                obj["recipients"] = [t for t in stanzas if not isinstance(t, dict) or t.get("key_id") != new.get("key_id")] + [new]
        elif op == 3:
            s["key_id"] = pick(src, list(w.device_ids) + ["0123456789abcdef", 7])
        elif op == 4:
            s["type"] = pick(src, ["hpke-x25519", "hpke-p256", "scrypt", "age"])
        elif op == 5:
            obj["salt"] = base64.b64encode(src.bytes(32)).decode()
        elif op == 6:
            stanzas.insert(src.int(0, len(stanzas)), json.loads(json.dumps(pick(src, stanzas))) if chance(src, 50) else header_obj(pick(src, w.seeds).data)["recipients"][0])
        elif op == 7:
            if chance(src, 50):
                del stanzas[src.int(0, len(stanzas) - 1)]
            else:
                stanzas.reverse()
        elif op == 8 and s.get("type") == "scrypt":
            if chance(src, 50):
                s["log_n"] = pick(src, [9, 10, 11, 12, 13, 22, 23])
            else:
                s["salt"] = base64.b64encode(src.bytes(16)).decode()
        else:
            mutate_json(src, obj, ("recipients",))
    return resign(w, with_header(data, canonical_json(obj)), chunks_loose(data)), True


def _split_layout(payload: bytes) -> tuple[Any, bytes]:
    n = struct.unpack(">I", payload[8:12])[0]
    return json.loads(payload[12 : 12 + n]), payload[12 + n :]


def _join_layout(layout: Any, rest: bytes) -> bytes:
    body = layout if isinstance(layout, bytes) else canonical_json(layout)
    return b"EGPAYLD1" + struct.pack(">I", len(body)) + body + rest


def _mutate_onnx_graph(src: Any, graph: bytes) -> bytes:
    from onnx import ModelProto, TensorProto

    m = ModelProto()
    m.ParseFromString(graph)
    inits = list(m.graph.initializer)
    t = pick(src, inits) if inits else m.graph.initializer.add()
    op = src.int(0, 4)
    if op == 0 and t.external_data:
        e = pick(src, list(t.external_data))
        e.value = pick(src, ["0", "-1", "1", "64", "abc", "", " 1", "1e3", "99999999999999999999", "0x10"])
    elif op == 1 and t.external_data:
        del t.external_data[src.int(0, len(t.external_data) - 1)]
    elif op == 2:
        t.data_location = pick(src, [TensorProto.DEFAULT, TensorProto.EXTERNAL])
    elif op == 3:
        t.external_data.add(key=pick(src, ["location", "offset", "length", "checksum"]), value=pick(src, ["0", "x", "-5"]))
    else:
        t.dims[:] = [pick(src, [0, 1, 16, 2**40]) for _ in range(src.int(0, 3))]
    return m.SerializeToString()


def gen_inner(src: Any, w: World) -> tuple[str, bytes]:
    """A (payload kind, inner payload) pair: the harness seals it, so it sits behind a valid
    signature and valid tags and only the inner payload rules (and its readers) decide."""
    name = pick(src, sorted(w.payloads))
    kind, payload, sections, tensors = w.payloads[name]
    op = src.int(0, 9)
    if op <= 2:  # one value of the layout (kept canonical)
        layout, rest = _split_layout(payload)
        for _ in range(src.int(1, 2)):
            layout = mutate_json(src, layout)
        payload = _join_layout(layout, rest)
    elif op == 3:  # raw bytes: magic, layout length, layout JSON, padding
        payload = mutate_bytes(src, payload, [], (0, 4096 + 64))
    elif op == 4:
        payload = payload[: src.int(0, len(payload))] if chance(src, 50) else payload + src.bytes(src.int(1, 4097))
    elif op == 5:  # nesting and non-canonical layouts: the JSON reader's limits
        depth = pick(src, [10, 1000, 100_000])
        payload = _join_layout(pick(src, [b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth, b"{ }"]), b"")
    elif op == 6:  # a well-formed layout around a mutated section: reaches the readers of sections
        secs = list(sections)
        i = src.int(0, len(secs) - 1)
        sname, sdata = secs[i]
        if sname == "graph" and chance(src, 70):
            sdata = _mutate_onnx_graph(src, sdata)
        elif sname == "safetensors" and chance(src, 50):
            n = struct.unpack("<Q", sdata[:8])[0]
            hdr = json.loads(sdata[8 : 8 + n])
            if chance(src, 20):
                body = b"[" * pick(src, [100, 100_000]) + b"]"
            else:
                body = json.dumps(mutate_json(src, hdr)).encode()
            sdata = struct.pack("<Q", len(body)) + body + sdata[8 + n :]
        else:
            sdata = mutate_bytes(src, sdata, [])
        secs[i] = (sname, sdata)
        payload = bytes(build_payload(kind, secs, tensors))
    elif op == 7 and "onnx" in w.payloads:  # a generated tensor table, laid out canonically
        graph = w.payloads["onnx"][2][0][1]
        specs = [(f"t{i}", pick(src, ["float32", "bfloat16", "bool", "int64", "uint8"]),
                  tuple(pick(src, [0, 1, 3, 7, 64, 2**31, 2**32]) for _ in range(src.int(0, 3)))) for i in range(src.int(0, 4))]  # fmt: skip
        entries = tensor_entries(specs)
        extent = entries[-1].offset + entries[-1].length if entries else 0
        weights = src.bytes(min(extent, 1 << 16))
        layout = {"sections": [{"name": "graph", "length": len(graph)}, {"name": "weights", "length": extent}],
                  "tensors": [e.to_json() for e in entries]}  # fmt: skip
        payload = bytes(build_payload("onnx", [("graph", graph), ("weights", weights)], entries)) if extent <= 1 << 16 \
            else _join_layout(layout, bytes(4096 - (12 + len(canonical_json(layout))) % 4096) + graph)
        kind = "onnx"
    elif op == 8:
        kind = pick(src, ["raw", "safetensors", "onnx"])
    else:
        payload = mutate_bytes(src, payload, [p[1] for p in w.payloads.values()])
    return kind, payload[: 1 << 20]


def gen_parse(src: Any, w: World) -> bytes:
    seed = pick(src, w.seeds)
    data, hl = seed.data, header_len(seed.data)
    mode = src.int(0, 9)
    if mode <= 5:
        return mutate_bytes(src, data, [s.data for s in w.seeds], (0, 16 + hl))
    if mode <= 7:
        return mutate_preamble(src, data)
    obj = header_obj(data)
    for _ in range(src.int(1, 3)):
        obj = mutate_json(src, obj)
    return with_header(data, canonical_json(obj))


# --- properties ---------------------------------------------------------------------------------


def _where(exc: BaseException) -> str:
    """module.function of the innermost edgeguard frame: stable across unrelated edits."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "edgeguard" in Path(f.filename).parts]
    return f"{Path(frames[-1].filename).stem}.{frames[-1].name}" if frames else "?"


def outcome(what: str, fn: Callable[[], Any], rep: list[Finding]) -> tuple[str, Any]:
    """("ok", result) or (category, exception); anything but an EdgeguardError is a finding (added
    to `rep`, category "crash"), so that one known finding does not hide the other properties."""
    try:
        return "ok", fn()
    except EdgeguardError as exc:
        if isinstance(exc, IntegrityError):
            hidden = exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
            if str(exc) != IntegrityError.MESSAGE or not hidden:
                rep.append(Finding(f"{what}-integrity-not-opaque", repr(exc)))
        return CATEGORY.get(type(exc), type(exc).__name__), exc  # a PolicyError, say, from the runtime
    except ImportError:
        raise
    except Exception as exc:
        rep.append(Finding(f"{what}-raised:{type(exc).__name__}@{_where(exc)}", "".join(traceback.format_exception(exc))))
        return "crash", exc


def ref_outcome(data: bytes, w: World, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", ref.decode(data, w.ref_trusted, w.ref_identities, **kw)
    except ref.RefError as exc:
        return ("format" if exc.category == "inner_format" else exc.category), exc


def agree(what: str, mine: str, theirs: str, rep: list[Finding]) -> None:
    if mine != theirs and mine != "crash":
        rep.append(Finding(f"disagree-{what}:{mine}-vs-reference-{theirs}"))


def check_parse(w: World, data: bytes, rep: list[Finding]) -> str:
    mine, got = outcome("parse", lambda: read_container(io.BytesIO(data)), rep)
    if mine == "ok":
        body = got.preamble_and_header
        if PREAMBLE.pack(b"EDGESEAL", 1, 0, len(body) - 16) + canonical_json(got.header.to_json()) != body:
            rep.append(Finding("parse-accepted-a-second-encoding"))
    theirs, _ = ref_outcome(data, w, verify_only=True)
    if theirs not in ("format", "version"):  # the reference parsed the header and went on
        theirs = "integrity" if len(data) < 112 + header_len(data) else "ok"
    agree("parse", mine, theirs, rep)
    return mine


class Scratch:
    """A fresh directory per check: a rejected unseal must leave nothing in it."""

    def __init__(self, w: World) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=w.tmp))

    def __enter__(self) -> Path:
        return self.dir

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def check_verify(w: World, data: bytes, signed: bool, rep: list[Finding]) -> str:
    with Scratch(w) as d:
        path = d / "f.sealed"
        path.write_bytes(data)
        mine, _ = outcome("verify", lambda: verify_file(path, w.trust), rep)
    theirs, _ = ref_outcome(data, w, verify_only=True)
    agree("verify", mine, theirs, rep)
    if mine == "ok" and not signed and data not in w.originals:
        rep.append(Finding("verify-accepted-an-unsigned-edit"))
    return mine


def check_open(w: World, data: bytes, signed: bool, rep: list[Finding], runtime: bool = False) -> str:
    with Scratch(w) as d:
        path = d / "f.sealed"
        path.write_bytes(data)
        buffers: list[bytearray] = []

        def allocate(n: int) -> bytearray:
            buffers.append(bytearray(n))
            return buffers[-1]

        mine, got = outcome("open", lambda: decrypt_file(path, w.identities, w.trust, allocate=allocate), rep)
        if mine != "ok" and any(any(b) for b in buffers):
            rep.append(Finding(f"plaintext-left-in-buffer:{mine}"))
        out = d / "out" / "model"
        out.parent.mkdir()
        unsealed, _ = outcome("unseal", lambda: unseal_file(path, out, w.identities, w.trust), rep)
        if unsealed != "ok" and any(out.parent.iterdir()):
            rep.append(Finding(f"unseal-left-output:{unsealed}"))
        # unseal also parses an ONNX payload's graph (to embed the weights again), which opening
        # leaves to onnxruntime: it may refuse a signed graph that opening accepts, never the reverse.
        if unsealed != mine and unsealed != "crash" and (unsealed, mine) != ("format", "ok"):
            rep.append(Finding(f"unseal-and-open-disagree:{unsealed}-vs-{mine}"))
        verified, _ = outcome("verify", lambda: verify_file(path, w.trust), rep)
        if mine == "ok" and verified != "ok":
            rep.append(Finding(f"opened-but-verify-said:{verified}"))
        if runtime:
            check_runtime(w, path, rep)
    theirs, decoded = ref_outcome(data, w)
    agree("open", mine, theirs, rep)
    if mine == "ok" and theirs == "ok" and bytes(got.buffer) != decoded.payload:
        rep.append(Finding("open-plaintext-differs-from-reference"))
    if mine == "ok" and not signed and data not in w.originals:
        rep.append(Finding("open-accepted-an-unsigned-edit"))
    return mine


def check_runtime(w: World, path: Path, rep: list[Finding]) -> None:
    """The device path: secure memory, then numpy views of the tensors (no onnxruntime session)."""
    from edgeguard.runtime import open_sealed

    result, got = outcome("runtime", lambda: open_sealed(path, identity=w.identities, trust=w.trust), rep)
    if result == "ok":
        got.close()


def check_inner(w: World, kind: str, payload: bytes, rep: list[Finding]) -> str:
    mine, _ = outcome("parse_payload", lambda: parse_payload(payload, kind), rep)
    try:
        ref.check_inner_payload(payload, kind)
        theirs = "ok"
    except ref.RefInnerFormatError:
        theirs = "format"
    agree("inner", mine, theirs, rep)
    return mine


# --- one execution per target ------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    target: str
    data: bytes  # the sealed file (or, for parse, the bytes parsed)
    signed: bool = True
    payload: bytes | None = None
    kind: str | None = None
    detail: str = ""


def generate(w: World, target: str, src: Any) -> Case:
    if target == "parse":
        return Case(target, gen_parse(src, w), False)
    if target in ("verify", "open"):
        data, signed = gen_container(src, w)
        return Case(target, data, signed)
    if target == "unwrap":
        data, signed = gen_unwrap(src, w)
        return Case(target, data, signed)
    kind, payload = gen_inner(src, w)
    return Case(target, w.seal(payload, kind), True, payload, kind)


def safe_generate(w: World, target: str, src: Any) -> Case:
    """generate(), with a mutator's own bug turned into a "harness-error" case (a new finding, so it
    gets fixed) instead of the end of the run."""
    try:
        return generate(w, target, src)
    except Exception as exc:
        return Case("harness", f"harness-error:{type(exc).__name__}".encode(), detail="".join(traceback.format_exception(exc)))


def execute(w: World, case: Case) -> tuple[str, list[Finding]]:
    """Runs the target's checks: (the edgeguard outcome, the properties that failed)."""
    rep: list[Finding] = []
    if case.target == "harness":
        return "harness-error", [Finding(case.data.decode(), case.detail)]
    if case.target == "parse":
        return check_parse(w, case.data, rep), rep
    if case.target == "verify":
        return check_verify(w, case.data, case.signed, rep), rep
    if case.target in ("open", "unwrap"):
        return check_open(w, case.data, case.signed, rep), rep
    if case.payload is not None:
        check_inner(w, case.kind or "raw", case.payload, rep)
    return check_open(w, case.data, True, rep, runtime=True), rep


@dataclasses.dataclass
class Stats:
    target: str
    executions: int = 0
    seconds: float = 0.0
    findings: dict[str, int] = dataclasses.field(default_factory=dict)  # signature -> count
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def new(self) -> list[str]:
        return sorted(s for s in self.findings if s not in KNOWN)

    def line(self) -> str:
        known = sum(n for s, n in self.findings.items() if s in KNOWN)
        return (f"{self.target:7s} executions={self.executions} seconds={self.seconds:.1f} "
                f"new_findings={len(self.new)} known_findings={known} outcomes={dict(sorted(self.outcomes.items()))}")  # fmt: skip


def record(findings: Path, case: Case, f: Finding, stats: Stats, note: str) -> None:
    first = f.signature not in stats.findings
    stats.findings[f.signature] = stats.findings.get(f.signature, 0) + 1
    if not first:
        return
    findings.mkdir(parents=True, exist_ok=True)
    stem = findings / f"{case.target}-{hashlib.sha256(case.data).hexdigest()[:12]}"
    stem.with_suffix(".sealed").write_bytes(case.data)
    if case.payload is not None:
        stem.with_suffix(".payload").write_bytes(case.payload)
    known = f"known: {KNOWN[f.signature]}" if f.signature in KNOWN else "NEW"
    stem.with_suffix(".txt").write_text(
        f"target: {case.target}\nsignature: {f.signature}\n{known}\n{note}\nsigned: {case.signed}\nkind: {case.kind}\n"
        f"replay: python tools/fuzz.py --replay {stem.with_suffix('.sealed')} --target {case.target}\n\n{f.detail}\n"
    )
    print(f"finding [{known}] {case.target}: {f.signature} -> {stem}.sealed", flush=True)


def run_python(w: World, target: str, seed: int, seconds: float | None, iterations: int | None, findings: Path) -> Stats:
    """The structured mutation fuzzer: iteration i of (seed, target) always makes the same decisions."""
    stats = Stats(target)
    start = time.monotonic()
    i = 0
    while (iterations is None or i < iterations) and (seconds is None or time.monotonic() - start < seconds):
        src = RandomSource(random.Random(f"{seed}/{target}/{i}"))
        case = safe_generate(w, target, src)
        result, rep = execute(w, case)
        stats.outcomes[result] = stats.outcomes.get(result, 0) + 1
        for f in rep:
            record(findings, case, f, stats, f"python engine: --seed {seed}, iteration {i}")
        i += 1
        stats.executions = i
    stats.seconds = time.monotonic() - start
    return stats


# --- atheris: one child process per target (libFuzzer exits the process when it is done) ---------

_CHILD = """
import sys, atheris, importlib.util
with atheris.instrument_imports(include=["edgeguard", "reference_decoder"]):
    spec = importlib.util.spec_from_file_location("edgeguard_fuzz", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["edgeguard_fuzz"] = mod
    spec.loader.exec_module(mod)
mod.atheris_child(sys.argv[2:])
"""


def atheris_child(argv: list[str]) -> None:
    import atheris

    target, findings, stats_path = argv[0], Path(argv[1]), Path(argv[2])
    w = World(stats_path.parent)  # libFuzzer ends the process: the parent removes this directory
    stats = Stats(target)
    start = time.monotonic()

    def save() -> None:
        stats.seconds = time.monotonic() - start
        stats_path.write_text(json.dumps(dataclasses.asdict(stats)))

    def one(data: bytes) -> None:
        if target == "parse" and data[:1] == b"R":  # raw: libFuzzer's own bytes are the file
            case = Case(target, data[1:], False)
        else:
            case = safe_generate(w, target, FdpSource(atheris.FuzzedDataProvider(data)))
        result, rep = execute(w, case)
        stats.outcomes[result] = stats.outcomes.get(result, 0) + 1
        for f in rep:
            record(findings, case, f, stats, "atheris engine")
        if rep:
            save()
        stats.executions += 1
        if stats.executions % 50 == 0:
            save()

    corpus = Path(tempfile.mkdtemp(prefix=f"corpus-{target}-", dir=w.tmp))
    if target == "parse":
        for i, s in enumerate(w.seeds):
            (corpus / f"seed{i}").write_bytes(b"R" + s.data)
    save()
    atheris.Setup([sys.argv[0], *argv[3:], str(corpus)], one)
    atheris.Fuzz()


def run_atheris(target: str, seed: int, seconds: float | None, iterations: int | None, findings: Path) -> Stats:
    findings.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        stats_path = Path(d) / "stats.json"
        args = [f"-seed={seed}", f"-artifact_prefix={findings}/{target}-", "-max_len=16384", "-timeout=60",
                "-rss_limit_mb=4096", "-print_final_stats=1"]  # fmt: skip
        if seconds is not None:
            args.append(f"-max_total_time={max(1, int(seconds))}")
        if iterations is not None:
            args.append(f"-runs={iterations}")
        cmd = [sys.executable, "-c", _CHILD, str(Path(__file__).resolve()), target, str(findings), str(stats_path), *args]
        log = Path(d) / "libfuzzer.log"
        with open(log, "wb") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
        text = log.read_text(errors="replace")
        stats = Stats(target)
        if stats_path.exists():
            stats = Stats(**json.loads(stats_path.read_text()))
        if rc != 0:  # libFuzzer stopped on a crash, a timeout, a leak or an out-of-memory
            stats.findings[f"atheris-exit-{rc}"] = 1
            (findings / f"{target}-libfuzzer.log").write_text(text)
            print(text[-4000:], file=sys.stderr)
        return stats


# --- replay and main -------------------------------------------------------------------------------


def replay(path: Path, target: str) -> int:
    w = World()
    try:
        return _replay(w, path, target)
    finally:
        w.close()


def _replay(w: World, path: Path, target: str) -> int:
    data = path.read_bytes()
    payload_path = path.with_suffix(".payload")
    case = Case(target, data, True)
    if target == "inner" and payload_path.exists():
        case.payload = payload_path.read_bytes()
        case.kind = header_obj(data)["payload"]["kind"]
    result, rep = execute(w, case)
    print(f"{target}: edgeguard says {result}; {len(rep)} properties failed")
    for f in rep:
        print(f"FINDING {f.signature}" + (f" (known: {KNOWN[f.signature]})" if f.signature in KNOWN else "") + f"\n{f.detail}")
    return 1 if rep else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    p.add_argument("--seconds", type=float, help="time budget (split evenly between targets for --target all)")
    p.add_argument("--iterations", type=int, help="executions per target")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--engine", choices=("auto", "atheris", "python"), default="auto")
    p.add_argument("--findings", type=Path, default=Path("fuzz-findings"), help="folder for failing inputs")
    p.add_argument("--replay", type=Path, help="check one saved sealed file against --target's properties")
    args = p.parse_args(argv)
    if args.replay:
        return replay(args.replay, "open" if args.target == "all" else args.target)
    if args.seconds is None and args.iterations is None:
        p.error("give --seconds or --iterations (or both)")
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "python"
    targets = TARGETS if args.target == "all" else (args.target,)
    seconds = None if args.seconds is None else args.seconds / len(targets)
    print(f"engine={engine} seed={args.seed} targets={','.join(targets)}", flush=True)
    w = World() if engine == "python" else None
    new = 0
    for target in targets:
        if w is not None:
            stats = run_python(w, target, args.seed, seconds, args.iterations, args.findings)
        else:
            stats = run_atheris(target, args.seed, seconds, args.iterations, args.findings)
        print(stats.line(), flush=True)
        for sig, n in sorted(stats.findings.items()):
            print(f"  {'known' if sig in KNOWN else 'NEW  '} x{n}: {sig}" + (f"  ({KNOWN[sig]})" if sig in KNOWN else ""))
        new += len(stats.new)
    if w is not None:
        w.close()
    print(f"new findings: {new}" + (f" (inputs in {args.findings}/)" if new else ""))
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
