"""Compliance evidence: what edgeguard verified about one sealed artifact (and a device's audit
log), each fact mapped to the controls it supports (docs/cli.md, ``edgeguard evidence``).

Only facts that were verified here appear as facts; a check that failed is reported as a
failure, and a check that could not run (no key given) is listed as not checked. Mappings say
"supports": no tool satisfies a control on its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EdgeguardError

# Control catalogue: id -> (framework, title). Well-known identifiers only.
CONTROLS: dict[str, tuple[str, str]] = {
    "SI-7": ("NIST SP 800-53 Rev. 5", "Software, Firmware, and Information Integrity"),
    "SC-12": ("NIST SP 800-53 Rev. 5", "Cryptographic Key Establishment and Management"),
    "SC-13": ("NIST SP 800-53 Rev. 5", "Cryptographic Protection"),
    "SC-28": ("NIST SP 800-53 Rev. 5", "Protection of Information at Rest"),
    "AU-9": ("NIST SP 800-53 Rev. 5", "Protection of Audit Information"),
    "AU-10": ("NIST SP 800-53 Rev. 5", "Non-repudiation"),
    "AI RMF MEASURE": ("NIST AI RMF 1.0", "MEASURE function"),
    "AI RMF MANAGE": ("NIST AI RMF 1.0", "MANAGE function"),
    "AI RMF MAP": ("NIST AI RMF 1.0", "MAP function"),
    "EU AI Act Art. 11": ("EU AI Act (Regulation (EU) 2024/1689)", "Technical documentation"),
    "EU AI Act Art. 12": ("EU AI Act (Regulation (EU) 2024/1689)", "Record-keeping"),
    "EU AI Act Art. 15": ("EU AI Act (Regulation (EU) 2024/1689)", "Accuracy, robustness and cybersecurity"),
    "ISO/IEC 42001 A.6.2.6": ("ISO/IEC 42001:2023 Annex A", "AI system operation and monitoring"),
    "ISO/IEC 42001 A.6.2.7": ("ISO/IEC 42001:2023 Annex A", "AI system technical documentation"),
    "ISO/IEC 42001 A.6.2.8": ("ISO/IEC 42001:2023 Annex A", "AI system recording of event logs"),
    "EO 14028 Sec. 4(e)": ("US Executive Order 14028", "Software supply chain security (SBOM)"),
    "AML.M0004": ("MITRE ATLAS mitigation", "Restrict Number of AI Model Queries"),
    "AML.M0012": ("MITRE ATLAS mitigation", "Encrypt Sensitive Information"),
    "AML.M0013": ("MITRE ATLAS mitigation", "Code Signing"),
    "AML.M0014": ("MITRE ATLAS mitigation", "Verify AI Artifacts"),
    "AML.M0015": ("MITRE ATLAS mitigation", "Adversarial Input Detection"),
    "AML.M0023": ("MITRE ATLAS mitigation", "AI Bill of Materials"),
    "AML.M0024": ("MITRE ATLAS mitigation", "AI Telemetry Logging"),
}

NOT_COVERED = (
    "Membership inference, model inversion and training-data extraction through the model's answers (the detector targets model extraction only).",
    "The model's own accuracy, robustness to adversarial examples, bias and fairness: nothing here evaluates the model.",
    "Training-data quality, provenance or poisoning: datasets and licence in the ML-BOM are the publisher's declarations, copied, not verified.",
    "A root user on the device reading the decrypted weights from memory while the model is loaded (docs/threat-model.md).",
    "Audit records after the last valid checkpoint, deletion of the whole log, and events that were never logged (queue drops are counted).",
    "The correctness of the device clock: validity windows and record timestamps use it.",
    "Whether the publisher's signing key, the device keys and the audit key are managed well (rotation, storage, revocation).",
)


@dataclass
class Fact:
    id: str
    statement: str
    controls: list[str]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    id: str
    statement: str


@dataclass
class Evidence:
    artifact: str
    generated: str
    facts: list[Fact] = field(default_factory=list)
    failures: list[Finding] = field(default_factory=list)
    not_checked: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fact(self, id: str, statement: str, controls: Sequence[str], **details: Any) -> None:
        self.facts.append(Fact(id, statement, list(controls), details))

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "generated": self.generated,
            "ok": self.ok,
            "verified_facts": [{"id": f.id, "statement": f.statement, "supports": f.controls, "details": f.details} for f in self.facts],
            "failed_checks": [{"id": f.id, "statement": f.statement} for f in self.failures],
            "not_checked": [{"id": f.id, "statement": f.statement} for f in self.not_checked],
            "controls": {c: {"framework": CONTROLS[c][0], "title": CONTROLS[c][1]} for c in sorted({c for f in self.facts for c in f.controls})},
            "not_covered": list(NOT_COVERED),
        }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def collect(
    sealed: str | os.PathLike[str],
    trust: Any,
    *,
    identities: Sequence[Any] = (),
    audit_paths: Sequence[str | os.PathLike[str]] = (),
    audit_verifier: Any = None,
    anchors: Sequence[Any] = (),
    version_store: Any = None,
    now: float | None = None,
) -> Evidence:
    """Verifies what it can and returns the evidence. Never raises on a failed check (it becomes
    a failure in the report); raises OSError only for a file that cannot be read at all."""
    from .bom import summary
    from .unseal import verify_file

    now = time.time() if now is None else now
    ev = Evidence(artifact=os.fspath(sealed), generated=_iso(now) or "")
    try:
        verified = verify_file(sealed, trust)
    except (EdgeguardError, OSError) as exc:
        ev.failures.append(Finding("artifact.signature", f"the artifact's signature and chunk integrity did NOT verify ({_error(exc)}); "
                                   "nothing about the artifact is reported"))  # fmt: skip
        _audit_facts(ev, audit_paths, audit_verifier, anchors, None)
        return ev
    container = verified.container
    h = container.header
    digest = hashlib.sha256(container.preamble_and_header).hexdigest()
    ev.fact("artifact.signature", f"signed by trusted publisher key {h.signer_key_id} ({h.signer_alg}); the signature covers the header and every chunk digest",
            ["SI-7", "AU-10", "AML.M0013", "AML.M0014", "AI RMF MANAGE"], signer={"alg": h.signer_alg, "key_id": h.signer_key_id},
            header_digest=digest, model={"name": h.model.name, "version": h.model.version})  # fmt: skip
    ev.fact("artifact.integrity", f"all {h.chunk_count} chunk(s) ({h.payload_length} payload bytes) match the signed chunk root",
            ["SI-7", "AML.M0014"], chunks=h.chunk_count, payload_length=h.payload_length)  # fmt: skip
    wraps = sorted({s.type for s in h.recipients})
    ev.fact("artifact.encryption", f"payload encrypted with {h.cipher} (256-bit key, 128-bit tags, per-chunk nonces derived from a fresh per-file key); "
            f"that key is wrapped for {len(h.recipients)} recipient(s) ({', '.join(wraps)})",
            ["SC-13", "SC-12", "SC-28", "AML.M0012", "EU AI Act Art. 15"], cipher=h.cipher, key_bits=256, tag_bits=128, recipients=len(h.recipients),
            wrapping=wraps)  # fmt: skip
    m = h.model
    window = f"from {_iso(m.not_before) or '-'} until {_iso(m.not_after) or '-'}"
    if (m.not_before is not None and now < m.not_before) or (m.not_after is not None and now > m.not_after):
        ev.failures.append(Finding("artifact.validity", f"outside its signed validity window ({window}) at {_iso(now)}"))
    elif m.not_before is None and m.not_after is None:
        ev.not_checked.append(Finding("artifact.validity", "the artifact has no signed validity window"))
    else:
        ev.fact("artifact.validity", f"within its signed validity window ({window}) at {_iso(now)}", ["SI-7", "AI RMF MANAGE"],
                not_before=_iso(m.not_before), not_after=_iso(m.not_after))  # fmt: skip
    _rollback(ev, version_store, m)
    if identities:
        _decrypted_facts(ev, sealed, identities, trust, summary)
    else:
        ev.not_checked.append(Finding("artifact.decryption", "AEAD tags, detector profile, ML-BOM and protected coverage need a device key (--identity)"))
    _audit_facts(ev, audit_paths, audit_verifier, anchors, digest)
    return ev


def _rollback(ev: Evidence, version_store: Any, m: Any) -> None:
    if version_store is None:
        ev.not_checked.append(Finding("artifact.anti_rollback", "no version store given (--version-store)"))
        return
    from .freshness import VersionStore

    store = version_store if isinstance(version_store, VersionStore) else VersionStore(version_store)
    try:
        highest = store.highest(m.name)
        store.check(m.name, m.version)
    except EdgeguardError as exc:
        ev.failures.append(Finding("artifact.anti_rollback", f"anti-rollback refuses it: {_error(exc)}"))
        return
    ev.fact("artifact.anti_rollback", f"version {m.version} is not older than the highest recorded for {m.name!r} ({highest if highest is not None else 'none'})",
            ["SI-7", "AI RMF MANAGE"], version=m.version, highest_recorded=highest)  # fmt: skip


def _decrypted_facts(ev: Evidence, sealed: Any, identities: Sequence[Any], trust: Any, summary: Any) -> None:
    from .audit.hooks import coverage_of
    from .secure_memory import SecureBuffer
    from .unseal import decrypt_file

    try:
        opened = decrypt_file(sealed, identities, trust, allocate=SecureBuffer)
    except (EdgeguardError, OSError) as exc:
        ev.failures.append(Finding("artifact.decryption", f"could not be decrypted and authenticated with the given device key ({_error(exc)})"))
        return
    kind = opened.container.header.payload_kind
    try:
        layout, buf = opened.layout, opened.buffer
        ev.fact("artifact.aead", "every chunk's AEAD tag verified with the device key; the inner layout is well formed", ["SI-7", "SC-13"],
                sections=sorted(layout.sections))  # fmt: skip
        sections = {n: bytes(layout.section(buf, n)) for n in ("detector_profile", "ml_bom") if n in layout.sections}
        kind_sections = [(n, layout.section(buf, n)) for n in layout.sections if n not in ("detector_profile", "ml_bom")]
        digests = {n: hashlib.sha256(v).hexdigest() for n, v in kind_sections}
        for v in kind_sections:
            v[1].release()
    finally:
        buf.close()
    coverage = coverage_of(opened) if kind != "onnx" else _session_coverage(sealed, identities, trust)
    if coverage is not None:
        ev.fact("artifact.coverage", f"protected coverage: {json.dumps(coverage)}", ["SC-28", "AML.M0012"], coverage=coverage)
    else:
        ev.not_checked.append(Finding("artifact.coverage", "this build reports no protected-coverage figure"))
    if "detector_profile" in sections:
        from .detect.profile import Profile

        try:
            profile = Profile.from_bytes(sections["detector_profile"])
            fpr = getattr(profile, "target_fpr", None) or (getattr(profile, "calibration", None) or {}).get("target_fpr")
            ev.fact("artifact.detector_profile", f"a signed extraction-detector profile is sealed with the model (calibrated target FPR {fpr})",
                    ["AML.M0004", "AML.M0015", "AI RMF MEASURE", "EU AI Act Art. 15", "ISO/IEC 42001 A.6.2.6"], target_fpr=fpr)  # fmt: skip
        except Exception as exc:
            ev.failures.append(Finding("artifact.detector_profile", f"the sealed detector profile does not load ({type(exc).__name__})"))
    else:
        ev.not_checked.append(Finding("artifact.detector_profile", "no detector profile is sealed with the model"))
    if "ml_bom" in sections:
        _bom_fact(ev, sections["ml_bom"], digests, summary)
    else:
        ev.not_checked.append(Finding("artifact.ml_bom", "no ML-BOM is sealed with the model"))


def _session_coverage(sealed: Any, identities: Sequence[Any], trust: Any) -> Any:
    """The runtime's protected-coverage figure for an ONNX model, where this build reports one."""
    from .audit.hooks import coverage_of

    try:
        from .runtime import InferenceSession

        with InferenceSession(sealed, identity=list(identities), trust=trust) as session:
            return coverage_of(session)
    except Exception:  # onnxruntime refusing the model is not this report's business
        return None


def _bom_fact(ev: Evidence, raw: bytes, digests: dict[str, str], summary: Any) -> None:
    from .bom import BomError, check_bom

    try:
        doc = check_bom(raw)
    except BomError as exc:
        ev.failures.append(Finding("artifact.ml_bom", f"the sealed ML-BOM is malformed ({exc})"))
        return
    info = summary(doc)
    recorded = info.get("sections") or {}
    if recorded and recorded != digests:
        ev.failures.append(Finding("artifact.ml_bom", "the sealed ML-BOM's section digests do not match the payload it was sealed with"))
        return
    matched = " and its section digests match the decrypted payload" if recorded else ""
    ev.fact("artifact.ml_bom", f"a signed {info.get('format')} bill of materials is sealed with the model{matched}; licence and datasets in it are the "
            "publisher's declarations", ["EO 14028 Sec. 4(e)", "AML.M0023", "EU AI Act Art. 11", "ISO/IEC 42001 A.6.2.7", "AI RMF MAP"],
            bom={k: v for k, v in info.items() if k != "sections"})  # fmt: skip


def _audit_facts(ev: Evidence, paths: Sequence[Any], verifier: Any, anchors: Sequence[Any], header_digest: str | None) -> None:
    if not paths:
        ev.not_checked.append(Finding("audit.log", "no device audit log given (--audit)"))
        return
    from .audit import verify_log

    try:
        r = verify_log(list(paths), verifier, anchors)
    except OSError as exc:
        ev.failures.append(Finding("audit.log", f"the audit log cannot be read ({exc.strerror})"))
        return
    if verifier is None:
        ev.not_checked.append(Finding("audit.log", "no --audit-key or --audit-mac-key: the log's checkpoints were not verified, so nothing about it is reported"))
        return
    if not r.ok:
        intact = f"; records {r.first_seq}..{r.last_seq} before the problem are chained" if r.records else ""
        ev.failures.append(Finding("audit.log", f"the audit log is NOT intact: {r.problem}{intact}"))
        return
    controls = ["AU-9", "EU AI Act Art. 12", "ISO/IEC 42001 A.6.2.8", "AML.M0024", "AI RMF MEASURE"]
    if r.key_alg != "hmac-sha256":
        controls.insert(1, "AU-10")  # a device signature, not a shared-secret MAC
    signed = r.signed_through
    ev.fact("audit.log", f"audit log {r.log_id} intact up to record {r.last_seq} (hash chain from record {r.first_seq}); checkpoints by "
            f"{r.key_alg} key {r.key_id} vouch for records up to {signed}",
            controls, log_id=r.log_id, first_seq=r.first_seq, last_seq=r.last_seq, signed_through=signed, unsigned_tail=r.unsigned_tail,
            torn_tail_bytes=r.torn_tail, closed_cleanly=r.closed_cleanly, anchors_checked=r.anchors_checked)  # fmt: skip
    if r.unsigned_tail:
        ev.not_checked.append(Finding("audit.tail", f"{r.unsigned_tail} record(s) after the last checkpoint are chained but vouched for by no key"))
    if header_digest is not None:
        loads = [x for x in r.records if x.type == "model.load" and x.data.get("header_digest") == header_digest]
        alerts = [x for x in r.records if x.type == "detector.alert"]
        refused = [x for x in r.records if x.type == "model.refused"]
        ev.fact("audit.artifact_loads", f"the verified log records {len(loads)} load(s) of this artifact, {len(refused)} refused load(s) "
                f"and {len(alerts)} extraction alert(s)", ["EU AI Act Art. 12", "ISO/IEC 42001 A.6.2.6", "AML.M0024"],
                loads=[x.seq for x in loads][:100], refused=len(refused), alerts=len(alerts))  # fmt: skip


def render_markdown(ev: Evidence) -> str:
    doc = ev.to_json()
    out = [f"# edgeguard evidence report: {os.path.basename(ev.artifact)}", "",
           f"Generated {ev.generated}. Every fact below was verified by `edgeguard evidence` when this report was written; "
           "each supports (does not by itself satisfy) the controls listed.", "",
           f"**Result: {'all checks passed' if ev.ok else 'SOME CHECKS FAILED'}**", ""]  # fmt: skip
    if ev.failures:
        out += ["## Failed checks", ""] + [f"- **{f.id}**: {f.statement}" for f in ev.failures] + [""]
    out += ["## Verified facts", "", "| fact | statement | supports |", "|---|---|---|"]
    for f in ev.facts:
        out.append(f"| {f.id} | {f.statement.replace('|', '/')} | {', '.join(f.controls)} |")
    if not ev.facts:
        out.append("| - | nothing could be verified | - |")
    out += ["", "## Not checked", ""] + [f"- {f.id}: {f.statement}" for f in ev.not_checked]
    out += ["", "## Controls referenced", "", "| control | framework | title |", "|---|---|---|"]
    out += [f"| {c} | {v['framework']} | {v['title']} |" for c, v in doc["controls"].items()]
    out += ["", "## What this report does not cover", ""] + [f"- {t}" for t in NOT_COVERED] + [""]
    return "\n".join(out)


__all__ = ["CONTROLS", "NOT_COVERED", "Evidence", "Fact", "Finding", "collect", "render_markdown"]
