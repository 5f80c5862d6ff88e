"""The ML-BOM sealed with a model: a CycloneDX 1.6 document in the signed payload's optional
``ml_bom`` section (docs/FORMAT.md, "Inner payload"; docs/cli.md, ``seal --model-card``).

It describes the architecture (operators, parameter counts and dtypes, opset), which the format
keeps inside the encryption, so it is never in the public header. Publisher side only: reading an
ONNX model here needs the onnx package; a device never builds a BOM.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import FormatError

SECTION = "ml_bom"
MAX_BOM_SIZE = 4 << 20  # bytes of JSON, generated or attached
MAX_BOM_DEPTH = 64
MAX_MODEL_CARD_SIZE = 1 << 20
SPEC_VERSION = "1.6"
# The model-card file's fields (JSON or YAML): what the publisher declares, copied, never checked.
MODEL_CARD_FIELDS = {
    "name": "component name (default: the sealed model's name)",
    "description": "what the model does",
    "publisher": "who publishes it (an organisation or person)",
    "license": "an SPDX licence expression (e.g. Apache-2.0) or a licence's name",
    "task": "e.g. classification",
    "approach": "supervised, unsupervised, reinforcement-learning, semi-supervised or self-supervised",
    "architecture_family": "e.g. mlp, transformer",
    "model_architecture": "e.g. 2-layer MLP, 64 hidden units",
    "datasets": "list of {name, description?, url?, classification?} or names",
    "users": "list of intended users",
    "use_cases": "list of intended uses",
    "limitations": "list of technical limitations",
    "tradeoffs": "list of performance trade-offs",
    "ethical_considerations": "list of {name, mitigation?} or strings",
    "metrics": "list of {type, value, slice?}",
    "properties": "object of extra name -> string properties",
}
_APPROACHES = ("supervised", "unsupervised", "reinforcement-learning", "semi-supervised", "self-supervised")
_SPDX_EXPRESSION = re.compile(r"^\(?[A-Za-z0-9.+-]+\)?( (AND|OR|WITH) \(?[A-Za-z0-9.+-]+\)?)*$")
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
                11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}  # fmt: skip


class BomError(FormatError):
    """A model card or an attached BOM that cannot be used (malformed, too large, unknown fields)."""


def _depth(obj: Any, limit: int) -> None:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise BomError(f"nested deeper than {limit} levels")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))


def load_model_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The publisher's model card: a JSON or YAML object with the keys of MODEL_CARD_FIELDS.

    Raises:
        BomError: unreadable as JSON or YAML, too large, not an object, or unknown keys.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        raw = f.read(MAX_MODEL_CARD_SIZE + 1)
    if len(raw) > MAX_MODEL_CARD_SIZE:
        raise BomError(f"{os.fspath(path)}: a model card is at most {MAX_MODEL_CARD_SIZE} bytes")
    try:
        card = json.loads(raw)
    except ValueError:
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise BomError(f"{os.fspath(path)} is not JSON (reading YAML needs the pyyaml package)") from None
        try:
            card = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise BomError(f"{os.fspath(path)} is neither JSON nor YAML ({type(exc).__name__})") from None
    if not isinstance(card, dict):
        raise BomError(f"{os.fspath(path)}: a model card is an object (mapping) of fields")
    unknown = sorted(set(card) - set(MODEL_CARD_FIELDS))
    if unknown:
        raise BomError(f"{os.fspath(path)}: unknown model card field(s) {', '.join(map(str, unknown))}; known: {', '.join(MODEL_CARD_FIELDS)}")
    _depth(card, 16)
    if "approach" in card and card["approach"] not in _APPROACHES:
        raise BomError(f"model card approach must be one of {', '.join(_APPROACHES)}")
    return card


def load_attached_bom(path: str | os.PathLike[str]) -> bytes:
    """An existing SBOM/ML-BOM to seal as is: a CycloneDX or SPDX JSON document of at most
    MAX_BOM_SIZE bytes. Returned byte for byte.

    Raises:
        BomError: too large, not JSON, too deep, or not a CycloneDX or SPDX document.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        raw = f.read(MAX_BOM_SIZE + 1)
    if len(raw) > MAX_BOM_SIZE:
        raise BomError(f"{os.fspath(path)}: a BOM is at most {MAX_BOM_SIZE >> 20} MiB")
    check_bom(raw, str(os.fspath(path)))
    return raw


def check_bom(raw: bytes, what: str = "the BOM") -> dict[str, Any]:
    """Parses a BOM document: a JSON object that is CycloneDX (bomFormat) or SPDX (spdxVersion).

    Raises:
        BomError: otherwise.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BomError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise BomError(f"{what} is not a JSON object")
    _depth(doc, MAX_BOM_DEPTH)
    if doc.get("bomFormat") != "CycloneDX" and not isinstance(doc.get("spdxVersion"), str):
        raise BomError(f"{what} is neither a CycloneDX (bomFormat) nor an SPDX (spdxVersion) JSON document")
    return doc


def _file_hashes(path: Path) -> list[dict[str, str]]:
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha256.update(block)
            sha512.update(block)
    return [{"alg": "SHA-256", "content": sha256.hexdigest()}, {"alg": "SHA-512", "content": sha512.hexdigest()}]


def onnx_facts(path: Path) -> dict[str, Any]:
    """IR version, opsets, operators, parameter count and dtypes, inputs and outputs of an ONNX model."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise FormatError(f"{path} is not a loadable ONNX model ({type(exc).__name__})") from None
    ops: Counter[str] = Counter()

    def walk(graph: Any) -> None:
        for node in graph.node:
            ops[f"{node.domain + '.' if node.domain not in ('', 'ai.onnx') else ''}{node.op_type}"] += 1
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(g)

    walk(model.graph)
    params: Counter[str] = Counter()
    for t in model.graph.initializer:
        params[_ONNX_DTYPES.get(t.data_type, f"onnx-type-{t.data_type}")] += math.prod(t.dims)

    def shapes(values: Sequence[Any]) -> list[str]:
        out = []
        for v in values:
            dims = [d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim]
            out.append(f"{v.name}[{','.join(dims)}]")
        return out

    initializers = {t.name for t in model.graph.initializer}
    return {
        "ir_version": model.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "operators": dict(sorted(ops.items())),
        "parameters": sum(params.values()),
        "parameter_dtypes": dict(sorted(params.items())),
        "inputs": shapes([i for i in model.graph.input if i.name not in initializers]),
        "outputs": shapes(model.graph.output),
    }


def safetensors_facts(path: Path) -> dict[str, Any]:
    """Parameter count and dtypes from a safetensors header."""
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(min(n, 100 << 20)))
    params: Counter[str] = Counter()
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict):
            params[str(entry.get("dtype", "?")).lower()] += math.prod(entry.get("shape", []))
    return {"parameters": sum(params.values()), "parameter_dtypes": dict(sorted(params.items()))}


def _licenses(text: str) -> list[dict[str, Any]]:
    if _SPDX_EXPRESSION.match(text):
        return [{"expression": text, "acknowledgement": "declared"}]
    return [{"license": {"name": text, "acknowledgement": "declared"}}]


def _strings(card: Mapping[str, Any], key: str) -> list[str]:
    value = card.get(key, [])
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items]


def _model_card(card: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if "approach" in card:
        params["approach"] = {"type": card["approach"]}
    for key, out in (("task", "task"), ("architecture_family", "architectureFamily"), ("model_architecture", "modelArchitecture")):
        if key in card:
            params[out] = str(card[key])
    datasets = []
    for d in card.get("datasets", []) or []:
        entry: dict[str, Any] = {"type": "dataset"}
        if isinstance(d, Mapping):
            entry["name"] = str(d.get("name", "unnamed"))
            if "description" in d:
                entry["description"] = str(d["description"])
            if "classification" in d:
                entry["classification"] = str(d["classification"])
            if "url" in d:
                entry["contents"] = {"url": str(d["url"])}
        else:
            entry["name"] = str(d)
        datasets.append(entry)
    if datasets:
        params["datasets"] = datasets
    if facts.get("inputs"):
        params["inputs"] = [{"format": s} for s in facts["inputs"]]
    if facts.get("outputs"):
        params["outputs"] = [{"format": s} for s in facts["outputs"]]
    mc: dict[str, Any] = {}
    if params:
        mc["modelParameters"] = params
    metrics = []
    for m in card.get("metrics", []) or []:
        if isinstance(m, Mapping):
            metric = {k: str(m[k]) for k in ("type", "value", "slice") if k in m}
            if metric:
                metrics.append(metric)
    if metrics:
        mc["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    considerations: dict[str, Any] = {}
    for key, out in (("users", "users"), ("use_cases", "useCases"), ("limitations", "technicalLimitations"), ("tradeoffs", "performanceTradeoffs")):
        if key in card:
            considerations[out] = _strings(card, key)
    ethical = []
    for e in card.get("ethical_considerations", []) or []:
        if isinstance(e, Mapping):
            risk = {"name": str(e.get("name", ""))}
            if "mitigation" in e:
                risk["mitigationStrategy"] = str(e["mitigation"])
            ethical.append(risk)
        else:
            ethical.append({"name": str(e)})
    if ethical:
        considerations["ethicalConsiderations"] = ethical
    if considerations:
        mc["considerations"] = considerations
    return mc


def section_digests(sections: Sequence[tuple[str, Any]]) -> dict[str, str]:
    """SHA-256 of each payload section (the BOM cannot hold a digest of the payload it is part of)."""
    return {name: hashlib.sha256(memoryview(data).cast("B")).hexdigest() for name, data in sections}


def build_ml_bom(
    model_path: str | os.PathLike[str],
    kind: str,
    sections: Sequence[tuple[str, Any]],
    *,
    name: str,
    version: int,
    model_card: Mapping[str, Any] | None = None,
    source_path: str | os.PathLike[str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A CycloneDX 1.6 ML-BOM for a model about to be sealed.

    `sections` are the payload kind's sections (their digests are recorded); `source_path` is the
    user's original file when `model_path` is a derived one (``seal --optimize``).

    Raises:
        FormatError: an ONNX model that onnx cannot read.
        OSError: the file cannot be read.
    """
    from . import __version__

    path, source = Path(model_path), Path(source_path or model_path)
    card = dict(model_card or {})
    facts: dict[str, Any] = {}
    if kind == "onnx":
        facts = onnx_facts(path)
    elif kind == "safetensors":
        facts = safetensors_facts(path)
    props: list[dict[str, str]] = [{"name": "edgeguard:payload_kind", "value": kind},
                                   {"name": "edgeguard:file_size", "value": str(source.stat().st_size)}]  # fmt: skip
    if source != path:
        props.append({"name": "edgeguard:optimized", "value": "onnxruntime basic-level offline optimization"})
    for sec, digest in section_digests(sections).items():
        props.append({"name": f"edgeguard:section:{sec}:sha256", "value": digest})
    if "ir_version" in facts:
        props.append({"name": "onnx:ir_version", "value": str(facts["ir_version"])})
        for domain, v in facts["opsets"].items():
            props.append({"name": f"onnx:opset:{domain}", "value": str(v)})
        if facts["producer"]:
            props.append({"name": "onnx:producer", "value": facts["producer"]})
        props.append({"name": "onnx:operators", "value": ",".join(facts["operators"])})
        for op, count in facts["operators"].items():
            props.append({"name": f"onnx:operator:{op}", "value": str(count)})
    if "parameters" in facts:
        props.append({"name": "edgeguard:parameters", "value": str(facts["parameters"])})
        for dtype, count in facts["parameter_dtypes"].items():
            props.append({"name": f"edgeguard:parameters:{dtype}", "value": str(count)})
    for k, v in (card.get("properties") or {}).items():
        props.append({"name": str(k), "value": str(v)})
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": "model",
        "name": str(card.get("name", name)),
        "version": str(version),
        "hashes": _file_hashes(source),
    }
    if "publisher" in card:
        component["publisher"] = str(card["publisher"])
    if "description" in card:
        component["description"] = str(card["description"])
    if "license" in card:
        component["licenses"] = _licenses(str(card["license"]))
    component["properties"] = props
    mc = _model_card(card, facts)
    if mc:
        component["modelCard"] = mc
    when = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": when.isoformat().replace("+00:00", "Z"),
            "tools": {"components": [{"type": "application", "name": "edgeguard", "version": __version__}]},
            "component": {"type": "machine-learning-model", "bom-ref": "sealed-model", "name": component["name"], "version": str(version)},
        },
        "components": [component],
        "dependencies": [{"ref": "sealed-model", "dependsOn": ["model"]}],
    }


def encode(doc: Mapping[str, Any]) -> bytes:
    """The section's bytes: compact, sorted JSON. Raises BomError above MAX_BOM_SIZE."""
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) > MAX_BOM_SIZE:
        raise BomError(f"the ML-BOM is {len(raw)} bytes, more than {MAX_BOM_SIZE >> 20} MiB")
    return raw


class MlBom:
    """What ``seal_model(ml_bom=...)`` calls to build the ``ml_bom`` section once the payload's
    sections exist: ``MlBom(model_card=..., source_path=...)(path, kind, sections, model)``."""

    def __init__(self, model_card: Mapping[str, Any] | None = None, source_path: str | os.PathLike[str] | None = None) -> None:
        self.model_card = dict(model_card or {})
        self.source_path = source_path

    def __call__(self, path: Path, kind: str, sections: Sequence[tuple[str, Any]], model: Any) -> bytes:
        doc = build_ml_bom(path, kind, sections, name=model.name, version=model.version, model_card=self.model_card,
                           source_path=self.source_path)  # fmt: skip
        return encode(doc)


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The human-relevant fields of a CycloneDX ML-BOM (or of an attached document)."""
    if doc.get("bomFormat") != "CycloneDX":
        return {"format": "SPDX", "spdxVersion": doc.get("spdxVersion"), "name": doc.get("name")}
    comps = [c for c in doc.get("components", []) if isinstance(c, dict) and c.get("type") == "machine-learning-model"]
    c = comps[0] if comps else {}
    props = {p.get("name"): p.get("value") for p in c.get("properties", []) if isinstance(p, dict)}
    lic = c.get("licenses") or []
    licence = next((x.get("expression") or (x.get("license") or {}).get("id") or (x.get("license") or {}).get("name") for x in lic), None)
    datasets = [d.get("name") for d in ((c.get("modelCard") or {}).get("modelParameters") or {}).get("datasets", []) if isinstance(d, dict)]
    return {
        "format": f"CycloneDX {doc.get('specVersion')}",
        "name": c.get("name"),
        "version": c.get("version"),
        "publisher": c.get("publisher"),
        "license": licence,
        "sha256": next((h.get("content") for h in c.get("hashes", []) if h.get("alg") == "SHA-256"), None),
        "operators": props.get("onnx:operators"),
        "parameters": props.get("edgeguard:parameters"),
        "datasets": datasets,
        "sections": {k.split(":")[2]: v for k, v in props.items() if isinstance(k, str) and k.startswith("edgeguard:section:")},
    }


__all__ = ["MAX_BOM_SIZE", "MODEL_CARD_FIELDS", "SECTION", "BomError", "MlBom", "build_ml_bom", "check_bom", "encode", "load_attached_bom",
           "load_model_card", "section_digests", "summary"]
