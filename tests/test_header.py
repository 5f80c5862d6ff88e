"""Non-malleability of the header: one encoding per header (parse then re-encode is the identity),
every non-canonical JSON variant is a FormatError, and every named limit is enforced."""

from __future__ import annotations

import base64
import copy
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_decoder as ref
from edgeguard import format as fmt
from edgeguard.errors import FormatError, UnsupportedVersionError
from edgeguard.format import Header, ModelInfo, Stanza, parse_header, parse_preamble
from edgeguard.seal import seal_model
from edgeguard.unseal import inspect_file
from helpers import CHUNK, Keys, canonical, make_device, passphrase_recipient, raw_payload, seal_bytes


@pytest.fixture(scope="module")
def sealed(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("hdr") / "f.sealed"
    seal_bytes(path, raw_payload(b"x" * 5000), signer=keys.ed25519, recipients=[keys.x25519_dev.recipient, keys.p256_dev.recipient])
    return path.read_bytes()


@pytest.fixture
def obj(sealed: bytes) -> dict[str, Any]:
    hl = struct.unpack(">I", sealed[12:16])[0]
    o = json.loads(sealed[16 : 16 + hl])
    o["model"]["not_before"], o["model"]["not_after"] = 10, 20
    return o


def rejected(body: bytes) -> None:
    with pytest.raises(FormatError):
        parse_header(body)
    with pytest.raises(ref.RefFormatError):
        ref.parse_header(body)


def accepted(body: bytes) -> Header:
    header = parse_header(body)
    ref.parse_header(body)
    assert fmt.canonical_json(header.to_json()) == body
    return header


# --- one encoding ----------------------------------------------------------------------------


def test_sealed_header_reencodes_identically(sealed: bytes, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(sealed)
    container = inspect_file(tmp_path / "f")
    assert container.header.encode() == container.preamble_and_header


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(lambda s: 1 <= len(s.encode()) <= 256)
stanzas = st.one_of(
    st.builds(lambda w, i: Stanza("hpke-x25519", w, key_id=i), st.binary(min_size=80, max_size=80), st.text("0123456789abcdef", min_size=16, max_size=16)),
    st.builds(lambda w, i: Stanza("hpke-p256", w, key_id=i), st.binary(min_size=113, max_size=113), st.text("0123456789abcdef", min_size=16, max_size=16)),
)  # fmt: skip


@st.composite
def headers(draw: st.DrawFn) -> Header:
    if draw(st.booleans()):
        params = (("log_n", draw(st.integers(10, 22))), ("salt", draw(st.binary(min_size=16, max_size=16))))
        recipients: tuple[Stanza, ...] = (Stanza("scrypt", draw(st.binary(min_size=48, max_size=48)), params=params),)
    else:
        recipients = tuple(draw(st.lists(stanzas, min_size=1, max_size=5, unique_by=lambda s: s.key_id)))
    nb = draw(st.none() | st.integers(0, fmt.MAX_INT - 1))
    na = draw(st.none() | st.integers(0 if nb is None else nb + 1, fmt.MAX_INT))
    labels = draw(st.dictionaries(names.filter(lambda s: len(s.encode()) <= 64), st.text(max_size=20), max_size=5))
    return Header(
        cipher=draw(st.sampled_from(fmt.CIPHERS)),
        chunk_size=1 << draw(st.integers(12, 26)),
        payload_length=draw(st.integers(0, 1 << 40)),
        salt=draw(st.binary(min_size=32, max_size=32)),
        signer_alg=draw(st.sampled_from(fmt.SIGNATURE_ALGS)),
        signer_key_id=draw(st.text("0123456789abcdef", min_size=16, max_size=16)),
        recipients=recipients,
        model=ModelInfo(draw(names), draw(st.integers(0, fmt.MAX_INT)), draw(st.integers(0, fmt.MAX_INT)), nb, na, tuple(sorted(labels.items()))),
        payload_kind=draw(st.sampled_from(fmt.PAYLOAD_KINDS)),
    )


@settings(max_examples=80, deadline=None)
@given(headers())
def test_encode_parse_encode_is_the_identity(header: Header) -> None:
    encoded = header.encode()
    assert parse_preamble(encoded[:16]) == len(encoded) - 16
    body = encoded[16:]
    assert parse_header(body) == header
    assert parse_header(body).encode() == encoded
    ref.parse_header(body)


# --- non-canonical JSON ------------------------------------------------------------------------


def _dumps(o: Any, **kw: Any) -> bytes:
    return json.dumps(o, **kw).encode()


NONCANONICAL: list[tuple[str, Callable[[dict[str, Any]], bytes]]] = [
    ("spaces after separators", lambda o: _dumps(o, sort_keys=True)),
    ("indented", lambda o: _dumps(o, sort_keys=True, indent=1)),
    ("leading space", lambda o: b" " + canonical(o)),
    ("trailing newline", lambda o: canonical(o) + b"\n"),
    ("keys not sorted", lambda o: _dumps(dict(reversed(list(o.items()))), separators=(",", ":"))),
    ("nested keys not sorted", lambda o: canonical(o).replace(b'{"alg":"ed25519","key_id":', b'{"key_id":')
     .replace(b'"},"payload"', b'","alg":"ed25519"},"payload"').replace(b',"key_id":' + o["signer"]["key_id"].encode() * 0, b",")),
    ("unicode escape for ASCII", lambda o: canonical(o).replace(b'"cipher"', b'"\\u0063ipher"')),
    ("escaped slash", lambda o: canonical({**o, "model": {**o["model"], "name": "a/b"}}).replace(b"a/b", b"a\\/b")),
    ("raw UTF-8", lambda o: _dumps({**o, "model": {**o["model"], "name": "caf\u00e9"}}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)),
    ("lowercase unicode escape hex differs", lambda o: canonical({**o, "model": {**o["model"], "name": "caf\u00e9"}}).replace(b"\\u00e9", b"\\u00E9")),
    ("duplicate top-level key", lambda o: canonical(o)[:-1] + b',"cipher":"aes-256-gcm"}'),
    ("duplicate key, first sorted", lambda o: b'{"cipher":"aes-256-gcm",' + canonical(o)[1:]),
    ("duplicate nested key", lambda o: canonical(o).replace(b'"labels":{', b'"labels":{"a":"1","a":"1",', 1)),
    ("float version 1.0", lambda o: canonical(o).replace(b'"version":3', b'"version":3.0')),
    ("float chunk size", lambda o: canonical(o).replace(b'"chunk_size":4096', b'"chunk_size":4.096e3')),
    ("exponent integer", lambda o: canonical(o).replace(b'"created":1700000000', b'"created":17e8')),
    ("negative zero", lambda o: canonical(o).replace(b'"version":3', b'"version":-0')),
    ("leading zero", lambda o: canonical(o).replace(b'"version":3', b'"version":03')),
    ("NaN", lambda o: canonical(o).replace(b'"version":3', b'"version":NaN')),
    ("Infinity", lambda o: canonical(o).replace(b'"version":3', b'"version":Infinity')),
    ("null not_before", lambda o: canonical({**o, "model": {**o["model"], "not_before": None}})),
    ("null not_after", lambda o: canonical({**o, "model": {**o["model"], "not_after": None}})),
    ("null labels", lambda o: canonical({**o, "model": {**o["model"], "labels": None}})),
    ("null label value", lambda o: canonical({**o, "model": {**o["model"], "labels": {"a": None}}})),
    ("bool as version", lambda o: canonical({**o, "model": {**o["model"], "version": True}})),
    ("string as version", lambda o: canonical({**o, "model": {**o["model"], "version": "3"}})),
    ("negative created", lambda o: canonical({**o, "model": {**o["model"], "created": -1}})),
    ("version above 2^53-1", lambda o: canonical({**o, "model": {**o["model"], "version": 1 << 53}})),
    ("lone surrogate in name", lambda o: canonical({**o, "model": {**o["model"], "name": "\ud800"}})),
    ("lone surrogate in label key", lambda o: canonical({**o, "model": {**o["model"], "labels": {"\udfff": "v"}}})),
    ("unknown top-level key", lambda o: canonical({**o, "zzz": 1})),
    ("unknown model key", lambda o: canonical({**o, "model": {**o["model"], "extra": 1}})),
    ("unknown signer key", lambda o: canonical({**o, "signer": {**o["signer"], "x": "y"}})),
    ("missing payload", lambda o: canonical({k: v for k, v in o.items() if k != "payload"})),
    ("array instead of object", lambda o: canonical([o])),  # type: ignore[arg-type]
    ("not JSON", lambda o: canonical(o)[:-1]),
    ("not ASCII", lambda o: canonical(o).replace(b'"raw"', b'"r\xc3\xa4w"')),
]


def _b64_variants(value: str) -> list[tuple[str, str]]:
    raw = base64.b64decode(value)
    std = base64.b64encode(raw).decode()
    assert std == value and std.endswith("=")
    last = std[-2] if std.endswith("==") is False else std[-3]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # the final base64 digit before "=" carries 2 unused bits (32 bytes -> 44 chars, one "="):
    idx = alphabet.index(last)
    trailing_bits = alphabet[idx ^ 1]
    nonzero_bits = std[:-2] + trailing_bits + "="
    return [
        ("missing padding", std.rstrip("=")),
        ("extra padding", std + "=="),
        # a random value may hold no "+" or "/": then force a URL-safe-only character in
        ("urlsafe alphabet", base64.urlsafe_b64encode(raw).decode() if base64.urlsafe_b64encode(raw) != std.encode() else "-" + std[1:]),
        ("nonzero trailing bits", nonzero_bits),
        ("embedded newline", std[:20] + "\n" + std[20:]),
        ("embedded space", std[:20] + " " + std[20:]),
        ("wrong length", base64.b64encode(raw[:-1]).decode()),
    ]


@pytest.mark.parametrize(("name", "make"), NONCANONICAL, ids=[n for n, _ in NONCANONICAL])
def test_noncanonical_json_is_rejected(obj: dict[str, Any], name: str, make: Callable[[dict[str, Any]], bytes]) -> None:
    accepted(canonical(obj))
    body = make(copy.deepcopy(obj))
    assert body != canonical(obj)
    rejected(body)


@pytest.mark.parametrize("field", ["salt", "recipients.0.wrapped", "scrypt.salt", "scrypt.wrapped"])
def test_noncanonical_base64_is_rejected(obj: dict[str, Any], field: str) -> None:
    if field.startswith("scrypt"):
        obj["recipients"] = [{"type": "scrypt", "log_n": 10, "salt": base64.b64encode(bytes(range(16))).decode(),
                              "wrapped": base64.b64encode(bytes(range(48))).decode()}]  # fmt: skip
    accepted(canonical(obj))
    holder = {"salt": obj, "recipients.0.wrapped": obj["recipients"][0]}.get(field, obj["recipients"][0])
    key = field.split(".")[-1]
    value = holder[key]
    if not value.endswith("="):  # 48 bytes encode without padding: test the variants that apply
        for variant in (value + "=", value + "====", value[:20] + "\n" + value[20:], value.replace("A", "-", 1) if "A" in value else "-" + value[1:], value[:-4]):
            holder[key] = variant
            rejected(canonical(obj))
        return
    for _, variant in _b64_variants(value):
        holder[key] = variant
        assert variant != value
        rejected(canonical(obj))


def test_nonzero_trailing_bits_decode_to_the_same_bytes() -> None:
    """Sanity check of the variant above: Python's decoder alone would accept it."""
    value = base64.b64encode(bytes(range(32))).decode()
    variant = dict(_b64_variants(value))["nonzero trailing bits"]
    assert base64.b64decode(variant) == bytes(range(32)) and variant != value


# --- named limits ------------------------------------------------------------------------------


def _stanza(i: int) -> dict[str, Any]:
    return {"type": "hpke-x25519", "key_id": f"{i:016x}", "wrapped": base64.b64encode(bytes(80)).decode()}


def _scrypt(log_n: int = 10) -> dict[str, Any]:
    return {"type": "scrypt", "log_n": log_n, "salt": base64.b64encode(bytes(16)).decode(), "wrapped": base64.b64encode(bytes(48)).decode()}


LIMITS: list[tuple[str, Callable[[dict[str, Any]], None], bool]] = [
    ("chunk_size MIN", lambda o: o.update(chunk_size=fmt.MIN_CHUNK_SIZE), True),
    ("chunk_size MIN/2", lambda o: o.update(chunk_size=fmt.MIN_CHUNK_SIZE // 2), False),
    ("chunk_size MAX", lambda o: o.update(chunk_size=fmt.MAX_CHUNK_SIZE), True),
    ("chunk_size 2*MAX", lambda o: o.update(chunk_size=2 * fmt.MAX_CHUNK_SIZE), False),
    ("chunk_size not a power of two", lambda o: o.update(chunk_size=3 * CHUNK), False),
    ("chunk_size 0", lambda o: o.update(chunk_size=0), False),
    ("MAX_CHUNK_COUNT chunks", lambda o: o.update(payload_length=CHUNK * fmt.MAX_CHUNK_COUNT), True),
    ("MAX_CHUNK_COUNT + 1 chunks", lambda o: o.update(payload_length=CHUNK * fmt.MAX_CHUNK_COUNT + 1), False),
    ("payload_length 2^53-1", lambda o: o.update(payload_length=fmt.MAX_INT, chunk_size=fmt.MAX_CHUNK_SIZE), True),
    ("payload_length 2^53", lambda o: o.update(payload_length=fmt.MAX_INT + 1, chunk_size=fmt.MAX_CHUNK_SIZE), False),
    ("payload_length negative", lambda o: o.update(payload_length=-1), False),
    ("MAX_RECIPIENTS", lambda o: o.update(recipients=[_stanza(i) for i in range(fmt.MAX_RECIPIENTS)]), True),
    ("MAX_RECIPIENTS + 1", lambda o: o.update(recipients=[_stanza(i) for i in range(fmt.MAX_RECIPIENTS + 1)]), False),
    ("no recipients", lambda o: o.update(recipients=[]), False),
    ("duplicate stanza key_id", lambda o: o.update(recipients=[_stanza(1), _stanza(1)]), False),
    ("uppercase key_id", lambda o: o.update(recipients=[{**_stanza(1), "key_id": "00000000000000AB"}]), False),
    ("short key_id", lambda o: o.update(recipients=[{**_stanza(1), "key_id": "00ab"}]), False),
    ("wrapped too short", lambda o: o.update(recipients=[{**_stanza(1), "wrapped": base64.b64encode(bytes(79)).decode()}]), False),
    ("unknown stanza type", lambda o: o.update(recipients=[{**_stanza(1), "type": "hpke-x448"}]), False),
    ("stanza type a list", lambda o: o.update(recipients=[{**_stanza(1), "type": ["hpke-x25519"]}]), False),
    ("cipher a list", lambda o: o.update(cipher=["aes-256-gcm"]), False),
    ("signer alg an object", lambda o: o["signer"].update(alg={"ed25519": 1}), False),
    ("payload kind a list", lambda o: o["payload"].update(kind=["raw"]), False),
    ("recipients an object", lambda o: o.update(recipients={"0": _stanza(1)}), False),
    ("labels a list", lambda o: o["model"].update(labels=[["k", "v"]]), False),
    ("scrypt alone", lambda o: o.update(recipients=[_scrypt()]), True),
    ("scrypt with a device", lambda o: o.update(recipients=[_scrypt(), _stanza(1)]), False),
    ("device with scrypt", lambda o: o.update(recipients=[_stanza(1), _scrypt()]), False),
    ("two scrypt", lambda o: o.update(recipients=[_scrypt(), _scrypt(11)]), False),
    ("scrypt log_n 9", lambda o: o.update(recipients=[_scrypt(9)]), False),
    ("scrypt log_n 22", lambda o: o.update(recipients=[_scrypt(22)]), True),
    ("scrypt log_n 23", lambda o: o.update(recipients=[_scrypt(23)]), False),
    ("scrypt with key_id", lambda o: o.update(recipients=[{**_scrypt(), "key_id": "0" * 16}]), False),
    ("MAX_LABELS", lambda o: o["model"].update(labels={f"k{i}": "v" for i in range(fmt.MAX_LABELS)}), True),
    ("MAX_LABELS + 1", lambda o: o["model"].update(labels={f"k{i}": "v" for i in range(fmt.MAX_LABELS + 1)}), False),
    ("label key 64 bytes", lambda o: o["model"].update(labels={"k" * 64: ""}), True),
    ("label key 65 bytes", lambda o: o["model"].update(labels={"k" * 65: ""}), False),
    ("label key 64 bytes of UTF-8", lambda o: o["model"].update(labels={"\u00e9" * 32: ""}), True),
    ("label key 66 bytes of UTF-8", lambda o: o["model"].update(labels={"\u00e9" * 33: ""}), False),
    ("empty label key", lambda o: o["model"].update(labels={"": "v"}), False),
    ("label value 256 bytes", lambda o: o["model"].update(labels={"k": "v" * 256}), True),
    ("label value 257 bytes", lambda o: o["model"].update(labels={"k": "v" * 257}), False),
    ("label value not a string", lambda o: o["model"].update(labels={"k": 1}), False),
    ("name 256 bytes", lambda o: o["model"].update(name="n" * 256), True),
    ("name 257 bytes", lambda o: o["model"].update(name="n" * 257), False),
    ("name 258 bytes of UTF-8", lambda o: o["model"].update(name="\u00e9" * 129), False),
    ("empty name", lambda o: o["model"].update(name=""), False),
    ("not_before == not_after", lambda o: o["model"].update(not_before=5, not_after=5), False),
    ("not_before > not_after", lambda o: o["model"].update(not_before=6, not_after=5), False),
    ("only not_after", lambda o: o["model"].pop("not_before"), True),
    ("unknown cipher", lambda o: o.update(cipher="aes-128-gcm"), False),
    ("unknown signer alg", lambda o: o["signer"].update(alg="rsa"), False),
    ("unknown payload kind", lambda o: o["payload"].update(kind="pickle"), False),
    ("salt 31 bytes", lambda o: o.update(salt=base64.b64encode(bytes(31)).decode()), False),
]


@pytest.mark.parametrize(("name", "edit", "ok"), LIMITS, ids=[n for n, _, _ in LIMITS])
def test_named_limits(obj: dict[str, Any], name: str, edit: Callable[[dict[str, Any]], None], ok: bool) -> None:
    edit(obj)
    body = canonical(obj)
    if ok:
        accepted(body)
    else:
        rejected(body)


def _preamble(version: int = 1, flags: int = 0, header_len: int = 10, magic: bytes = b"EDGESEAL") -> bytes:
    return struct.pack(">8sHHI", magic, version, flags, header_len)


def test_preamble_limits() -> None:
    assert parse_preamble(_preamble(header_len=fmt.MAX_HEADER_SIZE)) == fmt.MAX_HEADER_SIZE
    assert parse_preamble(_preamble(header_len=1)) == 1
    for bad in (_preamble(header_len=fmt.MAX_HEADER_SIZE + 1), _preamble(header_len=0), _preamble(header_len=0xFFFFFFFF),
                _preamble(flags=1), _preamble(flags=0x8000), _preamble(magic=b"EDGESEAl"), _preamble()[:15], b""):  # fmt: skip
        with pytest.raises(FormatError) as exc:
            parse_preamble(bad)
        assert type(exc.value) is FormatError
    for version in (0, 3, 0x0100, 0xFFFF):  # 1 and 2 are read (version 2: tests/test_grants*.py)
        with pytest.raises(UnsupportedVersionError):
            parse_preamble(_preamble(version=version))
        with pytest.raises(ref.RefVersionError):
            ref.decode(_preamble(version=version) + b"{}", [], [])


def test_header_body_over_max_header_size_is_rejected(obj: dict[str, Any]) -> None:
    body = canonical(obj)
    big = body[:-1] + b',"zz":"' + b"a" * (fmt.MAX_HEADER_SIZE - len(body)) + b'"}'
    assert len(big) > fmt.MAX_HEADER_SIZE
    with pytest.raises(FormatError, match="MAX_HEADER_SIZE"):
        parse_header(big)


# --- the writer obeys the same limits ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"chunk_size": 3 * CHUNK}, FormatError),
        ({"chunk_size": CHUNK // 2}, FormatError),
        ({"chunk_size": 2 * fmt.MAX_CHUNK_SIZE}, FormatError),
        ({"labels": {f"k{i}": "" for i in range(65)}}, FormatError),
        ({"labels": {"": "v"}}, FormatError),
        ({"name": "n" * 257}, FormatError),
        ({"name": "\ud800"}, FormatError),
        ({"not_before": 5, "not_after": 5}, FormatError),
        ({"version": -1}, FormatError),
        ({"recipients": []}, ValueError),
        ({"recipients": "65"}, FormatError),
        ({"recipients": "scrypt+device"}, FormatError),
        ({"recipients": "same twice"}, FormatError),
    ],
    ids=["chunk-3x", "chunk-small", "chunk-big", "labels-65", "label-empty", "name-257", "name-surrogate",
         "window", "version-neg", "no-recipients", "recipients-65", "scrypt-not-alone", "duplicate-recipient"],
)
def test_seal_refuses_what_readers_reject(keys: Keys, tmp_path: Path, kwargs: dict[str, Any], error: type[Exception]) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"model")
    if kwargs.get("recipients") == "65":
        kwargs["recipients"] = [make_device("x25519").recipient for _ in range(65)]
    elif kwargs.get("recipients") == "scrypt+device":
        kwargs["recipients"] = [passphrase_recipient(), keys.x25519_dev.recipient]
    elif kwargs.get("recipients") == "same twice":
        kwargs["recipients"] = [keys.x25519_dev.recipient, keys.x25519_dev.recipient]
    kwargs.setdefault("recipients", [keys.x25519_dev.recipient])
    kwargs.setdefault("chunk_size", CHUNK)
    with pytest.raises(error):
        seal_model(src, tmp_path / "m.sealed", signer=keys.ed25519, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b'{"cipher":' + b"9" * 5000 + b"}",  # beyond Python's int digit limit
    b'{"cipher":1' + b"0" * 400 + b"}",
    b"",
    b"\x00",
    b'"just a string"',
    b"null",
], ids=["deep-array", "deep-object", "5000-digits", "huge-int", "empty", "nul", "string", "null"])  # fmt: skip
def test_hostile_json_is_a_format_error(body: bytes) -> None:
    rejected(body)


@pytest.mark.parametrize("depth", [7, 990])
def test_a_header_nested_past_the_limit_is_a_format_error_everywhere(obj: dict[str, Any], sealed: bytes, tmp_path: Path, depth: int) -> None:
    """~990 levels pass json.loads but made re-encoding raise RecursionError (a traceback from inspect)."""
    from edgeguard.cli import EXIT_FORMAT, main
    from helpers import with_header

    obj["model"]["labels"] = {"k": "?"}  # 3 levels above the label value: over MAX_JSON_DEPTH either way
    body = canonical(obj).replace(b'"?"', b"[" * depth + b'"v"' + b"]" * depth)  # json.dumps itself would recurse
    rejected(body)
    with pytest.raises(FormatError, match="MAX_JSON_DEPTH" if depth + 3 > fmt.MAX_JSON_DEPTH else "label"):
        parse_header(body)
    path = tmp_path / "deep.sealed"
    path.write_bytes(with_header(sealed, body))
    with pytest.raises(FormatError):
        inspect_file(path)
    assert main(["inspect", str(path)]) == EXIT_FORMAT
