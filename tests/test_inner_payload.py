"""The inner payload layout (FORMAT.md "Inner payload"): edgeguard's parser and the reference
decoder's agree on valid layouts and on Hypothesis mutations of them, and edgeguard only ever
raises FormatError. (This is the parser that runs behind a valid publisher signature.)"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import reference_decoder as ref
from edgeguard.errors import FormatError
from edgeguard.payload import build_payload, parse_payload, tensor_entries
from helpers import Blob

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _onnx_payload() -> tuple[str, bytes]:
    specs = [("w1", "float32", (4, 8)), ("b1", "float16", (3,)), ("emb", "int64", (2, 2, 2)), ("flag", "bool", (5,))]
    entries = tensor_entries(specs)
    weights = bytearray(entries[-1].offset + entries[-1].length)
    for e in entries:
        weights[e.offset : e.offset + e.length] = bytes([len(e.name)]) * e.length
    return "onnx", bytes(build_payload("onnx", [("graph", b"\x08\x07graph"), ("weights", bytes(weights))], entries))


VALID = [
    ("raw", bytes(build_payload("raw", [("data", b"model bytes")]))),
    ("raw", bytes(build_payload("raw", [("data", b"")]))),
    ("raw", bytes(build_payload("raw", [("data", b"d" * 5000), ("detector_profile", b"profile")]))),
    ("safetensors", bytes(build_payload("safetensors", [("safetensors", b"\x02" + bytes(7) + b"{}")]))),
    _onnx_payload(),
    ("onnx", bytes(build_payload("onnx", [("graph", b"g"), ("weights", b"")]))),
]


def verdict(payload: bytes, kind: str) -> str:
    try:
        parse_payload(payload, kind)
        mine = "ok"
    except FormatError:
        mine = "format"
    except Exception as exc:  # pragma: no cover - the property under test
        pytest.fail(f"parse_payload raised {type(exc).__name__}: {exc}")
    try:
        ref.check_inner_payload(payload, kind)
        theirs = "ok"
    except ref.RefInnerFormatError:
        theirs = "format"
    assert mine == theirs, (mine, theirs)
    return mine


@pytest.mark.parametrize(("kind", "payload"), VALID)
def test_valid_layouts(kind: str, payload: bytes) -> None:
    assert verdict(payload, kind) == "ok"
    for other in ("raw", "safetensors", "onnx"):
        if other != kind:
            assert verdict(payload, other) == "format"


def _split(payload: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack(">I", payload[8:12])[0]
    return json.loads(payload[12 : 12 + n]), payload[12 + n :]


def _join(layout: dict[str, Any], rest: bytes) -> bytes:
    body = json.dumps(layout, sort_keys=True, separators=(",", ":")).encode()
    return b"EGPAYLD1" + struct.pack(">I", len(body)) + body + rest


json_values = st.one_of(
    st.integers(-2, 70000), st.sampled_from([0, 1, 63, 64, 4096, 2**53 - 1, 2**53, 2**64]), st.booleans(), st.none(),
    st.text(max_size=6), st.lists(st.integers(-1, 9), max_size=4), st.sampled_from(["float32", "bfloat16", "complex64", "graph", "weights", "detector_profile", "data"]),
)  # fmt: skip


@st.composite
def layout_edits(draw: st.DrawFn) -> tuple[str, Blob]:
    """Edit one value of the layout JSON (kept canonical, so only the layout rules decide)."""
    kind, payload = draw(st.sampled_from(VALID))
    layout, rest = _split(payload)
    targets: list[tuple[Any, Any]] = [(layout, "sections"), (layout, "tensors")]
    for s in layout["sections"]:
        targets += [(s, "name"), (s, "length")]
    for t in layout["tensors"]:
        targets += [(t, k) for k in ("name", "dtype", "shape", "offset", "length")]
    holder, key = draw(st.sampled_from(targets))
    action = draw(st.sampled_from(["set", "delete", "add-field", "nudge"]))
    if action == "set":
        holder[key] = draw(json_values)
    elif action == "delete":
        del holder[key]
    elif action == "add-field":
        holder[draw(st.sampled_from(["extra", "offset", "kind"]))] = draw(json_values)
    elif isinstance(holder[key], int) and not isinstance(holder[key], bool):
        holder[key] += draw(st.sampled_from([-64, -1, 1, 64, 4096]))
    elif isinstance(holder[key], list) and holder[key]:
        holder[key] = holder[key][::-1] if draw(st.booleans()) else holder[key] + holder[key][:1]
    return kind, Blob(_join(layout, rest))


@st.composite
def byte_edits(draw: st.DrawFn) -> tuple[str, Blob]:
    kind, payload = draw(st.sampled_from(VALID))
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.one_of(st.integers(0, min(len(data), 4096) - 1), st.integers(0, len(data) - 1)))
        data[where] = draw(st.integers(0, 255))
    if draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] if draw(st.booleans()) else data + bytes(draw(st.integers(1, 4097)))
    return kind, Blob(data)


@SETTINGS
@given(layout_edits())
def test_layout_edits_agree(case: tuple[str, bytes]) -> None:
    event(verdict(case[1], case[0]))


@SETTINGS
@given(byte_edits())
def test_byte_edits_agree(case: tuple[str, bytes]) -> None:
    event(verdict(case[1], case[0]))


def test_overflowing_tensor_shape_is_rejected() -> None:
    """A shape whose element count overflows int64 must not pass as a zero-length tensor."""
    kind, payload = _onnx_payload()
    layout, rest = _split(payload)
    layout["tensors"].append({"name": "huge", "dtype": "float32", "shape": [2**32, 2**32, 4], "offset": 0, "length": 0})
    assert verdict(_join(layout, rest), kind) == "format"


@pytest.mark.parametrize("value", [["float32"], {"a": 1}, 5, None, True])
def test_non_string_dtype_is_a_format_error(value: Any) -> None:
    kind, payload = _onnx_payload()
    layout, rest = _split(payload)
    layout["tensors"][0]["dtype"] = value
    assert verdict(_join(layout, rest), kind) == "format"


def _with_tensor_names(*names: str) -> bytes:
    entries = tensor_entries([(n, "uint8", (3,)) for n in names])
    weights = bytearray(entries[-1].offset + entries[-1].length)
    return bytes(build_payload("onnx", [("graph", b"g"), ("weights", bytes(weights))], entries))


def test_tensor_name_length_limit() -> None:
    assert verdict(_with_tensor_names("a" * 4096), "onnx") == "ok"
    assert verdict(_with_tensor_names("a" * 4097), "onnx") == "format"
    assert verdict(_with_tensor_names("\u00e9" * 4096), "onnx") == "ok"  # characters, not bytes


@pytest.mark.parametrize(("rank", "outcome"), [(16, "ok"), (17, "format")])
def test_rank_limit(rank: int, outcome: str) -> None:
    entries = tensor_entries([("t", "float32", (1,) * rank)])
    payload = bytes(build_payload("onnx", [("graph", b"g"), ("weights", bytes(4))], entries))
    assert verdict(payload, "onnx") == outcome


def test_layout_size_limit_is_checked_before_reading_it() -> None:
    payload = bytearray(_onnx_payload()[1])
    payload[8:12] = struct.pack(">I", (16 << 20) + 1)
    assert verdict(bytes(payload) + bytes(16 << 20), "onnx") == "format"


@pytest.mark.parametrize("depth", [9, 990])
def test_deep_nesting_is_refused_before_parsing(depth: int) -> None:
    kind, payload = VALID[0]
    layout, _ = _split(payload)
    body = json.dumps(layout, sort_keys=True, separators=(",", ":"))
    deep = body.replace('"tensors":[]', '"tensors":' + "[" * (depth - 1) + "]" * (depth - 1)).encode()
    head = b"EGPAYLD1" + struct.pack(">I", len(deep)) + deep
    data = head + bytes(-len(head) % 4096) + b"model bytes"
    assert verdict(data, kind) == "format"
    with pytest.raises(FormatError, match="MAX_JSON_DEPTH"):
        parse_payload(data, kind)


def test_nesting_depth_boundary() -> None:
    from edgeguard.format import MAX_JSON_DEPTH, parse_canonical_json

    def nested(levels: int) -> bytes:  # the outer object is the first level
        return b'{"a":' + b"[" * (levels - 1) + b'"[{"' + b"]" * (levels - 1) + b"}"

    assert parse_canonical_json(nested(MAX_JSON_DEPTH), "test") == json.loads(nested(MAX_JSON_DEPTH))
    assert ref.canonical_object(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(FormatError, match="MAX_JSON_DEPTH"):
        parse_canonical_json(nested(MAX_JSON_DEPTH + 1), "test")
    with pytest.raises(ref.RefFormatError):
        ref.canonical_object(nested(MAX_JSON_DEPTH + 1))
