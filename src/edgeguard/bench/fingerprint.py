"""Platform fingerprint for benchmark results, and the cipher choice that follows from it.

``fingerprint()`` describes the machine a result was measured on: architecture, CPU model, core
counts, the ISA features that decide AEAD speed, OS, library versions and whether the process runs
under emulation. ``choose_cipher()`` turns a fingerprint or bench results into a cipher name for
``edgeguard seal --cipher auto``.

Emulation detection (``emulated``): qemu-user runs a guest binary on a host of another
architecture and passes most of the host through, so the signals are

* ``EDGEGUARD_EMULATED`` set to a non-empty value other than ``0`` (tools/aarch64 sets it);
* ``QEMU_LD_PREFIX`` or ``QEMU_CPU`` in the environment: qemu-user reads them and leaves them in
  the guest's environment;
* ``/proc/cpuinfo`` describing another architecture than the running one (qemu-user shows the
  host's file unless a fake one is supplied through its ``-L`` prefix);
* a registered and enabled ``binfmt_misc`` handler ``qemu-<machine>`` for the running machine's
  own architecture (nobody registers one on real hardware of that architecture).

None of these catches full-system emulation (qemu-system), which looks like real hardware.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

AES_GCM = "aes-256-gcm"
CHACHA = "chacha20-poly1305"

# ISA features reported per architecture family. True/False when known, absent when unknown.
X86_FEATURES = ("aes", "pclmulqdq", "vaes", "vpclmulqdq", "sha_ni", "avx2", "avx512f")
ARM_FEATURES = ("neon", "aes", "pmull", "sha2", "sha3", "sve")

# Linux arm64 AT_HWCAP bits (arch/arm64/include/uapi/asm/hwcap.h).
_ARM64_HWCAP = {"neon": 1 << 1, "aes": 1 << 3, "pmull": 1 << 4, "sha2": 1 << 6, "sha3": 1 << 17, "sve": 1 << 22}
_AT_HWCAP = 16

# macOS sysctl names of the same arm64 features.
_DARWIN_SYSCTL = {
    "neon": "hw.optional.AdvSIMD",
    "aes": "hw.optional.arm.FEAT_AES",
    "pmull": "hw.optional.arm.FEAT_PMULL",
    "sha2": "hw.optional.arm.FEAT_SHA256",
    "sha3": "hw.optional.arm.FEAT_SHA3",
}


def arch_family(machine: str) -> str:
    """Normalises ``platform.machine()`` spellings: x86_64, aarch64, arm, x86 or the input."""
    m = machine.lower()
    if m in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if m in ("aarch64", "arm64", "armv8l") or m.startswith("aarch64"):
        return "aarch64"
    if m.startswith("arm"):
        return "arm"
    if re.fullmatch(r"i[3-6]86|x86", m):
        return "x86"
    return m


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (the first CPU describes the others here)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _cpuinfo_arch(fields: Mapping[str, str]) -> str | None:
    if "vendor_id" in fields or "flags" in fields:
        return "x86_64"
    if "cpu implementer" in fields or "features" in fields:
        return "aarch64"
    return None


def _x86_features(fields: Mapping[str, str]) -> dict[str, bool]:
    flags = set(fields.get("flags", "").split())
    if not flags:
        return {}
    return {f: f in flags for f in X86_FEATURES}


def _arm_features_from_cpuinfo(fields: Mapping[str, str]) -> dict[str, bool]:
    names = set(fields.get("features", "").split())
    if not names:
        return {}
    # aarch64 says asimd, 32-bit ARM kernels say neon.
    out = {f: f in names for f in ARM_FEATURES}
    out["neon"] = bool(names & {"asimd", "neon"})
    return out


def _arm64_hwcap() -> dict[str, bool]:
    """Reads AT_HWCAP through libc's getauxval; empty where that is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        getauxval = libc.getauxval
    except (OSError, AttributeError):
        return {}
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    hwcap = getauxval(_AT_HWCAP)
    if not hwcap:
        return {}
    return {name: bool(hwcap & bit) for name, bit in _ARM64_HWCAP.items()}


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _isa(family: str, system: str, fields: Mapping[str, str]) -> tuple[dict[str, bool], str]:
    if family in ("x86_64", "x86"):
        feats = _x86_features(fields)
        return feats, "cpuinfo" if feats else "unknown"
    if family == "aarch64" and system == "Linux":
        feats = _arm64_hwcap()
        if feats:
            return feats, "hwcap"
    if family in ("aarch64", "arm") and system == "Linux":
        feats = _arm_features_from_cpuinfo(fields)
        return feats, "cpuinfo" if feats else "unknown"
    if family == "aarch64" and system == "Darwin":
        feats = {}
        for name, key in _DARWIN_SYSCTL.items():
            value = _sysctl(key)
            if value is not None:
                feats[name] = value == "1"
        return feats, "sysctl" if feats else "unknown"
    return {}, "unknown"


# Arm Ltd (implementer 0x41) cores common on edge boards and ARM servers, by MIDR part number.
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C",
    "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720",
}


def _cpu_model(system: str, fields: Mapping[str, str]) -> str | None:
    if "model name" in fields:
        return fields["model name"]
    if "cpu part" in fields:  # ARM Linux names no model; the implementer/part pair identifies it.
        implementer, part = fields.get("cpu implementer", "?").lower(), fields["cpu part"].lower()
        if implementer == "0x41" and part in _ARM_PARTS:
            return f"Arm {_ARM_PARTS[part]}"
        return f"implementer {implementer} part {part}"
    if system == "Darwin":
        return _sysctl("machdep.cpu.brand_string")
    return platform.processor() or None


def detect_emulation(machine: str | None = None, environ: Mapping[str, str] | None = None,
                     cpuinfo: str | None = None, binfmt_dir: str = "/proc/sys/fs/binfmt_misc") -> list[str]:
    """Returns the signals (see the module docstring) that say this process runs emulated."""
    env = os.environ if environ is None else environ
    family = arch_family(machine or platform.machine())
    signals = []
    if env.get("EDGEGUARD_EMULATED", "") not in ("", "0"):
        signals.append("env:EDGEGUARD_EMULATED")
    signals += [f"env:{k}" for k in ("QEMU_LD_PREFIX", "QEMU_CPU") if env.get(k)]
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    if text:
        seen = _cpuinfo_arch(_cpuinfo_fields(text))
        if seen and seen != family and not (seen == "aarch64" and family == "arm"):
            signals.append(f"cpuinfo:{seen}")
    qemu_name = {"aarch64": "aarch64", "arm": "arm", "x86_64": "x86_64"}.get(family)
    if qemu_name:
        handler = _read(os.path.join(binfmt_dir, f"qemu-{qemu_name}"))
        if handler and handler.startswith("enabled"):
            signals.append(f"binfmt:qemu-{qemu_name}")
    return signals


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def fingerprint() -> dict[str, Any]:
    """Describes this machine and process for a benchmark result (see the module docstring).

    Never raises on a missing /proc file or tool: unknown values are None or absent. Raises
    ImportError only if edgeguard's native core is missing.
    """
    from edgeguard import _core

    system = platform.system()
    machine = platform.machine()
    family = arch_family(machine)
    fields = _cpuinfo_fields(_read("/proc/cpuinfo") or "") if system == "Linux" else {}
    isa, isa_source = _isa(family, system, fields)
    signals = detect_emulation(machine)
    affinity = getattr(os, "sched_getaffinity", None)  # not on macOS
    usable = len(affinity(0)) if affinity is not None else os.cpu_count()
    return {
        "machine": machine,
        "arch": family,
        "cpu_model": _cpu_model(system, fields),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "hardware_threads": _core.hardware_threads(),
        "memory_bytes": _memory_bytes(),
        "isa": isa,
        "isa_source": isa_source,
        "os": {"system": system, "release": platform.release(), "libc": " ".join(platform.libc_ver()).strip() or None},
        "versions": {
            "python": platform.python_version(),
            "python_implementation": sys.implementation.name,
            "openssl": _core.openssl_version(),
            "onnxruntime": _version("onnxruntime"),
            "numpy": _version("numpy"),
            "edgeguard": _version("edgeguard"),
        },
        # These override OpenSSL's CPU capability detection, so they change what is measured.
        "openssl_capability_env": {k: v for k, v in os.environ.items() if k in ("OPENSSL_armcap", "OPENSSL_ia32cap")},
        "emulated": bool(signals),
        "emulation_signals": signals,
    }


def _lacks_aes_hardware(fp: Mapping[str, Any]) -> bool:
    """True when the fingerprint says AES-GCM has no hardware support (a known False, not unknown)."""
    isa = fp.get("isa") or {}
    arch = fp.get("arch")
    if arch in ("aarch64", "arm"):
        return isa.get("aes") is False or isa.get("pmull") is False
    if arch in ("x86_64", "x86"):
        return isa.get("aes") is False or isa.get("pclmulqdq") is False
    return False


def _fastest_open(results: Mapping[str, Any]) -> str | None:
    """The cipher with the higher single-thread open throughput in a bench result document."""
    crypto = (results.get("suites") or {}).get("crypto")
    if not crypto:
        return None
    best: dict[str, float] = {}
    for row in crypto.get("summary", []):
        # Per CPU-second when known: wall-clock figures also measure whatever else ran.
        best[row["cipher"]] = row.get("open_1t_bytes_per_cpu_s") or row["open_1t_bytes_per_s"]
    if AES_GCM in best and CHACHA in best:
        return AES_GCM if best[AES_GCM] >= best[CHACHA] else CHACHA
    return None


def choose_cipher(features_or_bench_results: Mapping[str, Any] | None = None) -> str:
    """Picks the AEAD for sealing: ``"aes-256-gcm"`` or ``"chacha20-poly1305"``.

    Accepts a fingerprint (``fingerprint()``), a bench result document (its ``fingerprint`` is
    used, and its crypto summary if present), or None for this machine's fingerprint.

    1. No AES/carry-less-multiply hardware (ARM without the AES+PMULL crypto extensions, x86
       without AES-NI+PCLMULQDQ) -> chacha20-poly1305: software AES-GCM is several times slower
       and not constant time.
    2. Else, bench results measured natively -> the cipher with the faster single-thread open.
       Emulated results are ignored: under qemu the ranking of code paths is inverted.
    3. Else aes-256-gcm.

    Raises ValueError if a bench document has no fingerprint.
    """
    doc = dict(features_or_bench_results) if features_or_bench_results is not None else {"fingerprint": fingerprint()}
    if "suites" in doc or "fingerprint" in doc:
        if "fingerprint" not in doc:
            raise ValueError("bench results carry no fingerprint")
        fp = doc["fingerprint"]
    else:
        fp, doc = doc, {}
    if _lacks_aes_hardware(fp):
        return CHACHA
    if doc and not fp.get("emulated"):
        fastest = _fastest_open(doc)
        if fastest:
            return fastest
    return AES_GCM
