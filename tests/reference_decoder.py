"""An independent decoder of the edgeguard sealed format (version 1, and version 2 artifacts, grants
and revocation lists), written from docs/FORMAT.md alone.

It uses the `cryptography` package for primitives (AES-GCM, ChaCha20-Poly1305, SHA-256, HMAC,
scrypt, X25519, ECDH, Ed25519, ECDSA) and nothing from edgeguard: HPKE (RFC 9180 base mode) is
rebuilt here from HKDF and the DH primitives, so a wrapping that only agrees with itself would be
caught. The differential tests require it to give the same plaintext, and the same accept/reject
decision (the same error category), as edgeguard's C++ core on every vector and on generated files.

Checks run in the order the spec reads: preamble, header, file size, signer, signature, chunk
digests (verify), key unwrap, chunk tags (open), inner payload. Version 2 (the second half of this
file): preamble, payload header, grant_len, file size, signer, signature, [verify: chunk digests,
embedded grant], grant (framing, body, signer, signature, artifact id, window, revocation, stanza,
key commitment), chunk tags.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

# --- error categories (compared with edgeguard's exception types by the differential tests) ------


class RefError(Exception):
    category = "error"


class RefFormatError(RefError):
    category = "format"


class RefVersionError(RefFormatError):
    category = "version"


class RefUntrustedError(RefError):
    category = "untrusted"


class RefNotRecipientError(RefError):
    category = "not_recipient"


class RefIntegrityError(RefError):
    category = "integrity"


class RefRevokedError(RefError):
    category = "revoked"


class RefNotYetValidError(RefError):
    category = "not_yet_valid"


class RefExpiredError(RefError):
    category = "expired"


class RefInnerFormatError(RefFormatError):
    """The inner payload is malformed (only reachable behind a valid publisher signature)."""

    category = "inner_format"


# --- constants, all from docs/FORMAT.md -------------------------------------------------------

MAGIC = b"EDGESEAL"
MAX_HEADER = 1 << 20
MIN_CHUNK, MAX_CHUNK = 1 << 12, 1 << 26
MAX_COUNT = 1 << 32
MAX_RECIPIENTS = 64
MAX_LABELS, MAX_LABEL_KEY, MAX_LABEL_VALUE = 64, 64, 256
MAX_NAME = 256
MAX_JSON_INT = (1 << 53) - 1
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
WRAPPED = {"hpke-x25519": 80, "hpke-p256": 113, "scrypt": 48}
HEX16 = re.compile(r"[0-9a-f]{16}\Z")

@dataclass(frozen=True)
class Passphrase:
    """A passphrase identity that refuses stanzas whose scrypt work factor exceeds `max_log_n`."""

    text: str | bytes
    max_log_n: int = 22


Identity = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey | str | bytes | Passphrase
Trusted = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


# --- canonical JSON ------------------------------------------------------------------------------


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise RefFormatError("duplicate key")
    return dict(pairs)


def _no_float(_: str) -> Any:
    raise RefFormatError("float")


def _no_constant(_: str) -> Any:
    raise RefFormatError("NaN/Infinity")


MAX_JSON_DEPTH = 8


def _depth(text: str) -> int:
    # Strings cannot contain a raw quote, so dropping every string literal leaves only structure.
    structure = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    depth = deepest = 0
    for ch in structure:
        depth += ch in "[{"
        depth -= ch in "]}"
        deepest = max(deepest, depth)
    return deepest


def canonical_object(data: bytes, err: type[RefError] = RefFormatError) -> dict[str, Any]:
    try:
        if _depth(data.decode("ascii")) > MAX_JSON_DEPTH:
            raise err("nested too deeply")
    except UnicodeDecodeError:
        raise err("not JSON") from None
    try:
        text = data.decode("ascii")
        obj = json.loads(text, object_pairs_hook=_no_dupes, parse_float=_no_float, parse_constant=_no_constant)
    except RefFormatError:
        raise err("non-canonical JSON") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise err("not JSON") from None
    if not isinstance(obj, dict):
        raise err("not an object")
    if json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() != data:
        raise err("not canonical")
    _no_nulls(obj, err)
    return obj


def _no_nulls(obj: Any, err: type[RefError]) -> None:
    if obj is None:
        raise err("null")
    if isinstance(obj, dict):
        for v in obj.values():
            _no_nulls(v, err)
    elif isinstance(obj, list):
        for v in obj:
            _no_nulls(v, err)


def _b64(value: Any, n: int) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value):
        raise RefFormatError("base64")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise RefFormatError("base64") from None
    if len(raw) != n or base64.b64encode(raw).decode() != value:
        raise RefFormatError("base64 length or non-canonical")
    return raw


def _uint(value: Any, lo: int = 0, hi: int = MAX_JSON_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RefFormatError("integer")
    return value


def _text(value: Any, lo: int, hi: int) -> str:
    if not isinstance(value, str):
        raise RefFormatError("string")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise RefFormatError("string is not UTF-8") from None
    if not lo <= n <= hi:
        raise RefFormatError("string length")
    return value


def _exact_keys(obj: Any, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(obj, dict) or not required <= set(obj) <= required | optional:
        raise RefFormatError("fields")
    return obj


# --- header --------------------------------------------------------------------------------------


@dataclass
class RefHeader:
    raw: dict[str, Any]
    cipher: str
    chunk_size: int
    payload_length: int
    salt: bytes
    signer_alg: str
    signer_key_id: str
    stanzas: list[dict[str, Any]]
    kind: str

    @property
    def count(self) -> int:
        return max(1, -(-self.payload_length // self.chunk_size))


def parse_header(body: bytes) -> RefHeader:
    obj = canonical_object(body)
    _exact_keys(obj, {"cipher", "chunk_size", "payload_length", "salt", "signer", "recipients", "model", "payload"})
    if obj["cipher"] not in ("aes-256-gcm", "chacha20-poly1305"):
        raise RefFormatError("cipher")
    cs = _uint(obj["chunk_size"], MIN_CHUNK, MAX_CHUNK)
    if bin(cs).count("1") != 1:
        raise RefFormatError("chunk size not a power of two")
    pl = _uint(obj["payload_length"])
    if max(1, -(-pl // cs)) > MAX_COUNT:
        raise RefFormatError("too many chunks")
    salt = _b64(obj["salt"], 32)
    signer = _exact_keys(obj["signer"], {"alg", "key_id"})
    if signer["alg"] not in ("ed25519", "ecdsa-p256-sha256"):
        raise RefFormatError("signer alg")
    if not isinstance(signer["key_id"], str) or not HEX16.match(signer["key_id"]):
        raise RefFormatError("signer key id")
    payload = _exact_keys(obj["payload"], {"kind"})
    if payload["kind"] not in ("onnx", "safetensors", "raw"):
        raise RefFormatError("payload kind")
    recipients = obj["recipients"]
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise RefFormatError("recipients")
    stanzas = []
    for r in recipients:
        if not isinstance(r, dict) or not isinstance(r.get("type"), str) or r["type"] not in WRAPPED:
            raise RefFormatError("stanza type")
        if r["type"] == "scrypt":
            _exact_keys(r, {"type", "salt", "log_n", "wrapped"})
            stanzas.append({"type": "scrypt", "salt": _b64(r["salt"], 16), "log_n": _uint(r["log_n"], 10, 22),
                            "wrapped": _b64(r["wrapped"], 48)})  # fmt: skip
        else:
            _exact_keys(r, {"type", "key_id", "wrapped"})
            if not isinstance(r["key_id"], str) or not HEX16.match(r["key_id"]):
                raise RefFormatError("stanza key id")
            stanzas.append({"type": r["type"], "key_id": r["key_id"], "wrapped": _b64(r["wrapped"], WRAPPED[r["type"]])})
    if any(s["type"] == "scrypt" for s in stanzas) and len(stanzas) > 1:
        raise RefFormatError("scrypt stanza not alone")
    ids = [s["key_id"] for s in stanzas if "key_id" in s]
    if len(ids) != len(set(ids)):
        raise RefFormatError("duplicate stanza key id")
    model = _exact_keys(obj["model"], {"name", "version", "created", "labels"}, {"not_before", "not_after"})
    _text(model["name"], 1, MAX_NAME)
    for k in ("version", "created", "not_before", "not_after"):
        if k in model:
            _uint(model[k])
    if "not_before" in model and "not_after" in model and not model["not_before"] < model["not_after"]:
        raise RefFormatError("validity window")
    labels = model["labels"]
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise RefFormatError("labels")
    for k, v in labels.items():
        _text(k, 1, MAX_LABEL_KEY)
        _text(v, 0, MAX_LABEL_VALUE)
    return RefHeader(obj, obj["cipher"], cs, pl, salt, signer["alg"], signer["key_id"], stanzas, payload["kind"])


# --- keys ----------------------------------------------------------------------------------------


def key_id(public_key: Any) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()[:16]


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def hpke_open_base(kem_id: int, private_key: Any, enc: bytes, ct: bytes, info: bytes) -> bytes:
    """RFC 9180 base-mode single-shot open with HKDF-SHA256 and AES-256-GCM, from the primitives."""
    kem_suite = b"KEM" + struct.pack(">H", kem_id)
    suite = b"HPKE" + struct.pack(">HHH", kem_id, 0x0001, 0x0002)

    def extract(sid: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return _hkdf_extract(salt, b"HPKE-v1" + sid + label + ikm)

    def expand(sid: bytes, prk: bytes, label: bytes, info_: bytes, n: int) -> bytes:
        return _hkdf_expand(prk, struct.pack(">H", n) + b"HPKE-v1" + sid + label + info_, n)

    if kem_id == 0x0020:
        pk_e = x25519.X25519PublicKey.from_public_bytes(enc)
        dh = private_key.exchange(pk_e)  # raises ValueError for an all-zero shared secret
        pk_rm = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        pk_e = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), enc)
        dh = private_key.exchange(ec.ECDH(), pk_e)
        pk_rm = private_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    eae_prk = extract(kem_suite, b"", b"eae_prk", dh)
    shared = expand(kem_suite, eae_prk, b"shared_secret", enc + pk_rm, 32)
    ctx = b"\x00" + extract(suite, b"", b"psk_id_hash", b"") + extract(suite, b"", b"info_hash", info)
    secret = extract(suite, shared, b"secret", b"")
    key = expand(suite, secret, b"key", ctx, 32)
    nonce = expand(suite, secret, b"base_nonce", ctx, 12)
    return AESGCM(key).decrypt(nonce, ct, b"")


def unwrap_dek(h: RefHeader, identities: Sequence[Identity]) -> bytes:
    ctx = b"edgeguard/v1 dek\x00" + h.salt
    for ident in identities:
        for s in h.stanzas:
            try:
                if isinstance(ident, (str, bytes, Passphrase)) and s["type"] == "scrypt":
                    pp = ident if isinstance(ident, Passphrase) else Passphrase(ident)
                    if s["log_n"] > pp.max_log_n:
                        continue
                    pw = pp.text.encode() if isinstance(pp.text, str) else pp.text
                    k = Scrypt(salt=b"edgeguard/v1 scrypt\x00" + s["salt"], length=32, n=1 << s["log_n"], r=8, p=1).derive(pw)
                    dek = ChaCha20Poly1305(k).decrypt(bytes(12), s["wrapped"], ctx)
                elif isinstance(ident, x25519.X25519PrivateKey) and s["type"] == "hpke-x25519":
                    if s["key_id"] != key_id(ident.public_key()):
                        continue
                    dek = hpke_open_base(0x0020, ident, s["wrapped"][:32], s["wrapped"][32:], ctx)
                elif isinstance(ident, ec.EllipticCurvePrivateKey) and s["type"] == "hpke-p256":
                    if s["key_id"] != key_id(ident.public_key()):
                        continue
                    dek = hpke_open_base(0x0010, ident, s["wrapped"][:65], s["wrapped"][65:], ctx)
                else:
                    continue
            except (InvalidTag, ValueError):
                continue
            if len(dek) == 32:
                return dek
    raise RefNotRecipientError("no identity opens a stanza")


def verify_signature(h: RefHeader, trusted: Sequence[Trusted], header_digest: bytes, root: bytes, sig: bytes) -> None:
    message = b"edgeguard/v1 signature\x00" + header_digest + root
    for pub in trusted:
        alg = "ed25519" if isinstance(pub, ed25519.Ed25519PublicKey) else "ecdsa-p256-sha256"
        if alg != h.signer_alg or key_id(pub) != h.signer_key_id:
            continue
        try:
            if isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(sig, message)
            else:
                r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                if not (1 <= r < P256_N and 1 <= s <= P256_N // 2):
                    raise RefIntegrityError("ECDSA r/s out of range or high s")
                pub.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise RefIntegrityError("bad signature") from None
        return
    raise RefUntrustedError("signer not trusted")


# --- the container -------------------------------------------------------------------------------


@dataclass
class Decoded:
    header: RefHeader
    payload: bytes  # the whole plaintext payload (inner layout included); b"" for verify-only


def _chunks(data: bytes, offset: int, h: RefHeader) -> list[bytes]:
    out = []
    for i in range(h.count):
        n = min(h.chunk_size, h.payload_length - i * h.chunk_size) + 16
        out.append(data[offset : offset + n])
        offset += n
    return out


def decode(
    data: bytes,
    trusted: Sequence[Trusted],
    identities: Sequence[Identity] = (),
    *,
    verify_only: bool = False,
    check_inner: bool = True,
) -> Decoded:
    """Verifies (and unless `verify_only`, decrypts and, if `check_inner`, checks the inner payload
    of) a sealed file."""
    if len(data) < 16 or data[:8] != MAGIC:
        raise RefFormatError("magic")
    version, flags, header_len = struct.unpack(">HHI", data[8:16])
    if version == 2:
        return decode_v2(data, trusted, identities, verify_only=verify_only, check_inner=check_inner)
    if version != 1:
        raise RefVersionError("version")
    if flags != 0:
        raise RefFormatError("flags")
    if not 1 <= header_len <= MAX_HEADER:
        raise RefFormatError("header length")
    if len(data) < 16 + header_len:
        raise RefFormatError("file ends inside the header")
    h = parse_header(data[16 : 16 + header_len])
    payload_off = 16 + header_len + 96
    if len(data) != payload_off + h.payload_length + 16 * h.count:
        raise RefIntegrityError("size")
    header_digest = hashlib.sha256(data[: 16 + header_len]).digest()
    root, sig = data[16 + header_len : 48 + header_len], data[48 + header_len : payload_off]
    verify_signature(h, trusted, header_digest, root, sig)
    chunks = _chunks(data, payload_off, h)
    computed = hashlib.sha256(
        b"edgeguard/v1 chunks\x00" + struct.pack(">Q", h.count) + b"".join(hashlib.sha256(c).digest() for c in chunks)
    ).digest()
    if verify_only:
        if computed != root:
            raise RefIntegrityError("chunk root")
        return Decoded(h, b"")
    dek = unwrap_dek(h, identities)
    okm = HKDF(hashes.SHA256(), 39, h.salt, b"edgeguard/v1 payload\x00" + h.cipher.encode()).derive(dek)
    aead = (AESGCM if h.cipher == "aes-256-gcm" else ChaCha20Poly1305)(okm[:32])
    parts = []
    for i, c in enumerate(chunks):
        nonce = okm[32:39] + struct.pack(">I", i) + (b"\x01" if i == h.count - 1 else b"\x00")
        try:
            parts.append(aead.decrypt(nonce, c, header_digest + struct.pack(">Q", i)))
        except InvalidTag:
            raise RefIntegrityError("tag") from None
    if computed != root:
        raise RefIntegrityError("chunk root")
    payload = b"".join(parts)
    if check_inner:
        check_inner_payload(payload, h.kind)
    return Decoded(h, payload)


# --- the inner payload ---------------------------------------------------------------------------

ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
            "int8": 1, "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1}  # fmt: skip
KIND_SECTIONS = {"onnx": ["graph", "weights"], "safetensors": ["safetensors"], "raw": ["data"]}
MAX_LAYOUT_SIZE, MAX_TENSORS, MAX_TENSOR_NAME, MAX_RANK, MAX_INT = 16 << 20, 1 << 20, 4096, 16, (1 << 53) - 1


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def check_inner_payload(p: bytes, kind: str) -> dict[str, bytes]:
    """Returns name -> section bytes; raises RefInnerFormatError unless the layout is exactly canonical."""
    err = RefInnerFormatError
    if len(p) < 12 or p[:8] != b"EGPAYLD1":
        raise err("inner magic")
    (n,) = struct.unpack(">I", p[8:12])
    if n > MAX_LAYOUT_SIZE or 12 + n > len(p):
        raise err("layout length")
    layout = canonical_object(p[12 : 12 + n], err)
    if set(layout) != {"sections", "tensors"} or not isinstance(layout["sections"], list) or not isinstance(layout["tensors"], list):
        raise err("layout keys")
    cursor, sections, names = 12 + n, {}, []
    for e in layout["sections"]:
        if not isinstance(e, dict) or set(e) != {"name", "length"} or not isinstance(e["name"], str):
            raise err("section entry")
        ln = e["length"]
        if isinstance(ln, bool) or not isinstance(ln, int) or not 0 <= ln <= MAX_INT:
            raise err("section length")
        start = _up(cursor, 4096)
        if start + ln > len(p) or any(p[cursor:start]):
            raise err("section bounds or padding")
        sections[e["name"]] = p[start : start + ln]
        names.append(e["name"])
        cursor = start + ln
    if cursor != len(p):
        raise err("trailing bytes")
    req = KIND_SECTIONS[kind]
    extra = names[len(req) :]
    if names[: len(req)] != req or any(x not in ("detector_profile", "ml_bom") for x in extra) or len(set(extra)) != len(extra):
        raise err("section names")
    if len(layout["tensors"]) > MAX_TENSORS:
        raise err("too many tensors")
    off = 0
    ends = []
    for t in layout["tensors"]:
        if kind != "onnx":
            raise err("tensors outside onnx")
        if not isinstance(t, dict) or set(t) != {"name", "dtype", "shape", "offset", "length"}:
            raise err("tensor entry")
        if not isinstance(t["name"], str) or not 0 < len(t["name"]) <= MAX_TENSOR_NAME or not isinstance(t["dtype"], str) or t["dtype"] not in ITEMSIZE:
            raise err("tensor name/dtype")
        shape = t["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_RANK or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_INT for d in shape):
            raise err("tensor shape")
        extent = ITEMSIZE[t["dtype"]]
        for d in shape:
            extent *= d or 1
        if extent > MAX_INT:
            raise err("tensor extent")
        if any(isinstance(t[k], bool) or not isinstance(t[k], int) for k in ("offset", "length")):
            raise err("tensor offset/length")
        size = ITEMSIZE[t["dtype"]]
        for d in shape:
            size *= d
        if t["offset"] != off or t["length"] != size:
            raise err("tensor table not canonical")
        ends.append((off, off + size))
        off = _up(off + size, 64)
    if kind == "onnx":
        weights = sections["weights"]
        if len(weights) != (ends[-1][1] if ends else 0):
            raise err("weights length")
        for (_, end), (nxt, _) in pairwise(ends):
            if any(weights[end:nxt]):
                raise err("tensor padding")
    return sections


# --- version 2 -----------------------------------------------------------------------------------

MAX_GRANT_SIZE = 32 << 20
MAX_GRANT_RECIPIENTS = 1 << 17
MAX_REVOCATION_SIZE = 16 << 20
MAX_REVOKED = 1 << 18
HEX32 = re.compile(r"[0-9a-f]{32}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass
class RefHeaderV2:
    cipher: str
    chunk_size: int
    payload_length: int
    salt: bytes
    signer_alg: str
    signer_key_id: str
    kind: str
    commitment: bytes
    model: dict[str, Any]

    @property
    def count(self) -> int:
        return max(1, -(-self.payload_length // self.chunk_size))


def _signer_obj(value: Any) -> tuple[str, str]:
    signer = _exact_keys(value, {"alg", "key_id"})
    if signer["alg"] not in ("ed25519", "ecdsa-p256-sha256"):
        raise RefFormatError("signer alg")
    if not isinstance(signer["key_id"], str) or not HEX16.match(signer["key_id"]):
        raise RefFormatError("signer key id")
    return signer["alg"], signer["key_id"]


def _model(value: Any) -> dict[str, Any]:
    model = _exact_keys(value, {"name", "version", "created", "labels"}, {"not_before", "not_after"})
    _text(model["name"], 1, MAX_NAME)
    for k in ("version", "created", "not_before", "not_after"):
        if k in model:
            _uint(model[k])
    if "not_before" in model and "not_after" in model and not model["not_before"] < model["not_after"]:
        raise RefFormatError("validity window")
    labels = model["labels"]
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise RefFormatError("labels")
    for k, v in labels.items():
        _text(k, 1, MAX_LABEL_KEY)
        _text(v, 0, MAX_LABEL_VALUE)
    return model


def parse_header_v2(body: bytes) -> RefHeaderV2:
    obj = canonical_object(body)
    _exact_keys(obj, {"cipher", "chunk_size", "payload_length", "salt", "signer", "model", "payload", "key_commitment"})
    if obj["cipher"] not in ("aes-256-gcm", "chacha20-poly1305"):
        raise RefFormatError("cipher")
    cs = _uint(obj["chunk_size"], MIN_CHUNK, MAX_CHUNK)
    if bin(cs).count("1") != 1:
        raise RefFormatError("chunk size not a power of two")
    pl = _uint(obj["payload_length"])
    if max(1, -(-pl // cs)) > MAX_COUNT:
        raise RefFormatError("too many chunks")
    salt = _b64(obj["salt"], 32)
    alg, kid = _signer_obj(obj["signer"])
    payload = _exact_keys(obj["payload"], {"kind"})
    if payload["kind"] not in ("onnx", "safetensors", "raw"):
        raise RefFormatError("payload kind")
    commitment = _b64(obj["key_commitment"], 32)
    return RefHeaderV2(obj["cipher"], cs, pl, salt, alg, kid, payload["kind"], commitment, _model(obj["model"]))


def _verify_sig(alg: str, kid: str, trusted: Sequence[Trusted], message: bytes, sig: bytes) -> None:
    for pub in trusted:
        palg = "ed25519" if isinstance(pub, ed25519.Ed25519PublicKey) else "ecdsa-p256-sha256"
        if palg != alg or key_id(pub) != kid:
            continue
        try:
            if isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(sig, message)
            else:
                r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                if not (1 <= r < P256_N and 1 <= s <= P256_N // 2):
                    raise RefIntegrityError("ECDSA r/s out of range or high s")
                pub.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise RefIntegrityError("bad signature") from None
        return
    raise RefUntrustedError("signer not trusted")


def _signed_file(data: bytes, magic: bytes, max_body: int) -> tuple[bytes, bytes, bytes]:
    """(preamble || body, body, signature) of a grant or a revocation list."""
    if len(data) < 16 or data[:8] != magic:
        raise RefFormatError("magic")
    version, flags, body_len = struct.unpack(">HHI", data[8:16])
    if version != 2:
        raise RefVersionError("version")
    if flags != 0:
        raise RefFormatError("flags")
    if not 1 <= body_len <= max_body:
        raise RefFormatError("body length")
    if len(data) < 16 + body_len:
        raise RefFormatError("ends inside the body")
    if len(data) != 80 + body_len:
        raise RefIntegrityError("size")
    return data[: 16 + body_len], data[16 : 16 + body_len], data[16 + body_len :]


@dataclass
class RefGrant:
    artifact: str
    grant_id: str
    signer: tuple[str, str]
    not_before: int | None
    not_after: int | None
    stanzas: dict[str, dict[str, Any]]  # key id -> stanza
    signed: bytes
    signature: bytes


def parse_grant(data: bytes) -> RefGrant:
    signed, body, sig = _signed_file(data, b"EDGEGRNT", MAX_GRANT_SIZE)
    obj = canonical_object(body)
    _exact_keys(obj, {"artifact", "grant_id", "signer", "issued", "recipients"}, {"not_before", "not_after"})
    if not isinstance(obj["artifact"], str) or not HEX64.match(obj["artifact"]):
        raise RefFormatError("artifact id")
    if not isinstance(obj["grant_id"], str) or not HEX32.match(obj["grant_id"]):
        raise RefFormatError("grant id")
    signer = _signer_obj(obj["signer"])
    _uint(obj["issued"])
    nb = _uint(obj["not_before"]) if "not_before" in obj else None
    na = _uint(obj["not_after"]) if "not_after" in obj else None
    if nb is not None and na is not None and not nb < na:
        raise RefFormatError("grant window")
    recipients = obj["recipients"]
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_GRANT_RECIPIENTS:
        raise RefFormatError("grant recipients")
    stanzas: dict[str, dict[str, Any]] = {}
    last = ""
    for r in recipients:
        if not isinstance(r, dict) or r.get("type") not in ("hpke-x25519", "hpke-p256"):
            raise RefFormatError("grant stanza type")
        _exact_keys(r, {"type", "key_id", "wrapped"})
        if not isinstance(r["key_id"], str) or not HEX16.match(r["key_id"]):
            raise RefFormatError("stanza key id")
        if r["key_id"] <= last:
            raise RefFormatError("stanzas not in strictly ascending key id order")
        last = r["key_id"]
        stanzas[r["key_id"]] = {"type": r["type"], "wrapped": _b64(r["wrapped"], WRAPPED[r["type"]])}
    return RefGrant(obj["artifact"], obj["grant_id"], signer, nb, na, stanzas, signed, sig)


def verify_grant(g: RefGrant, trusted: Sequence[Trusted]) -> None:
    _verify_sig(*g.signer, trusted, b"edgeguard/v2 grant signature\x00" + hashlib.sha256(g.signed).digest(), g.signature)


@dataclass
class RefRevocation:
    serial: int
    signer_key_id: str
    grants: set[str]
    keys: set[str]


def parse_revocation(data: bytes, trusted: Sequence[Trusted]) -> RefRevocation:
    """Parses and verifies a revocation list."""
    signed, body, sig = _signed_file(data, b"EDGEREVK", MAX_REVOCATION_SIZE)
    obj = canonical_object(body)
    _exact_keys(obj, {"signer", "serial", "issued", "grants", "keys"})
    signer = _signer_obj(obj["signer"])
    serial = _uint(obj["serial"], 1)
    _uint(obj["issued"])
    lists = []
    for name, pattern in (("grants", HEX32), ("keys", HEX16)):
        values = obj[name]
        if not isinstance(values, list) or not all(isinstance(v, str) and pattern.match(v) for v in values):
            raise RefFormatError(f"revoked {name}")
        if any(a >= b for a, b in pairwise(values)):
            raise RefFormatError(f"revoked {name} not strictly ascending")
        lists.append(values)
    if len(lists[0]) + len(lists[1]) > MAX_REVOKED:
        raise RefFormatError("too many revoked entries")
    _verify_sig(*signer, trusted, b"edgeguard/v2 revocation signature\x00" + hashlib.sha256(signed).digest(), sig)
    return RefRevocation(serial, signer[1], set(lists[0]), set(lists[1]))


def decode_v2(
    data: bytes,
    trusted: Sequence[Trusted],
    identities: Sequence[Identity] = (),
    *,
    verify_only: bool = False,
    check_inner: bool = True,
    grant: bytes | None = None,
    now: int | None = None,
    revocation: RefRevocation | None = None,
) -> Decoded:
    """A version 2 artifact, opened through `grant` (grant file bytes) or its embedded grant."""
    version, flags, header_len = struct.unpack(">HHI", data[8:16])
    if version != 2:
        raise RefVersionError("version")
    if flags != 0:
        raise RefFormatError("flags")
    if not 1 <= header_len <= MAX_HEADER:
        raise RefFormatError("header length")
    if len(data) < 16 + header_len:
        raise RefFormatError("file ends inside the header")
    h = parse_header_v2(data[16 : 16 + header_len])
    payload_off = 16 + header_len + 96
    end = payload_off + h.payload_length + 16 * h.count
    if len(data) < end + 4:
        raise RefIntegrityError("size")
    (grant_len,) = struct.unpack(">I", data[end : end + 4])
    if grant_len != 0 and not 81 <= grant_len <= 80 + MAX_GRANT_SIZE:
        raise RefFormatError("grant_len")
    if len(data) != end + 4 + grant_len:
        raise RefIntegrityError("size")
    embedded = data[end + 4 :] if grant_len else None
    header_digest = hashlib.sha256(data[: 16 + header_len]).digest()
    root, sig = data[16 + header_len : 48 + header_len], data[48 + header_len : payload_off]
    _verify_sig(h.signer_alg, h.signer_key_id, trusted, b"edgeguard/v2 artifact signature\x00" + header_digest + root, sig)
    artifact = hashlib.sha256(b"edgeguard/v2 artifact id\x00" + data[:payload_off]).digest()
    chunks = _chunks(data[:end], payload_off, h)  # type: ignore[arg-type]
    computed = hashlib.sha256(
        b"edgeguard/v1 chunks\x00" + struct.pack(">Q", h.count) + b"".join(hashlib.sha256(c).digest() for c in chunks)
    ).digest()
    if verify_only:
        if computed != root:
            raise RefIntegrityError("chunk root")
        if embedded is not None:
            g = parse_grant(embedded)
            verify_grant(g, trusted)
            if g.artifact != artifact.hex():
                raise RefNotRecipientError("grant for another artifact")
        return Decoded(h, b"")  # type: ignore[arg-type]
    if grant is None and embedded is None:
        raise RefNotRecipientError("no grant")
    g = parse_grant(grant if grant is not None else embedded)  # type: ignore[arg-type]
    verify_grant(g, trusted)
    if g.artifact != artifact.hex():
        raise RefNotRecipientError("grant for another artifact")
    if now is not None and g.not_before is not None and now < g.not_before:
        raise RefNotYetValidError("grant not yet valid")
    if now is not None and g.not_after is not None and now > g.not_after:
        raise RefExpiredError("grant expired")
    if revocation is not None and g.grant_id in revocation.grants:
        raise RefRevokedError("grant revoked")
    info = b"edgeguard/v2 dek\x00" + h.salt + artifact
    dek = None
    for ident in identities:
        if isinstance(ident, (str, bytes, Passphrase)):
            continue
        kid = key_id(ident.public_key())
        s = g.stanzas.get(kid)
        if s is None:
            continue
        if revocation is not None and kid in revocation.keys:
            raise RefRevokedError("device key revoked")
        try:
            if isinstance(ident, x25519.X25519PrivateKey) and s["type"] == "hpke-x25519":
                dek = hpke_open_base(0x0020, ident, s["wrapped"][:32], s["wrapped"][32:], info)
            elif isinstance(ident, ec.EllipticCurvePrivateKey) and s["type"] == "hpke-p256":
                dek = hpke_open_base(0x0010, ident, s["wrapped"][:65], s["wrapped"][65:], info)
        except (InvalidTag, ValueError):
            dek = None
        if dek is not None and len(dek) == 32:
            break
        dek = None
    if dek is None:
        raise RefNotRecipientError("no stanza opens")
    if hashlib.sha256(b"edgeguard/v2 key commitment\x00" + h.salt + dek).digest() != h.commitment:
        raise RefIntegrityError("key commitment")
    okm = HKDF(hashes.SHA256(), 39, h.salt, b"edgeguard/v2 payload\x00" + h.cipher.encode()).derive(dek)
    aead = (AESGCM if h.cipher == "aes-256-gcm" else ChaCha20Poly1305)(okm[:32])
    parts = []
    for i, c in enumerate(chunks):
        nonce = okm[32:39] + struct.pack(">I", i) + (b"\x01" if i == h.count - 1 else b"\x00")
        try:
            parts.append(aead.decrypt(nonce, c, header_digest + struct.pack(">Q", i)))
        except InvalidTag:
            raise RefIntegrityError("tag") from None
    if computed != root:
        raise RefIntegrityError("chunk root")
    payload = b"".join(parts)
    if check_inner:
        check_inner_payload(payload, h.kind)
    return Decoded(h, payload)  # type: ignore[arg-type]
