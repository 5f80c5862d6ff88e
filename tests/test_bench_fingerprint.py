"""The platform fingerprint, emulation detection and the cipher choice."""

from __future__ import annotations

import platform

import pytest

from edgeguard import _core
from edgeguard.bench import fingerprint as fpmod
from edgeguard.bench.fingerprint import AES_GCM, CHACHA, arch_family, choose_cipher, detect_emulation, fingerprint

X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: fpu aes pclmulqdq avx2\n"
# A Raspberry Pi 4 (Cortex-A72): NEON but no crypto extensions.
PI4_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
               "CPU implementer\t: 0x41\nCPU part\t: 0xd08\n")
N1_CPUINFO = ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
              "CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")


@pytest.mark.parametrize(("machine", "family"), [
    ("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "aarch64"), ("arm64", "aarch64"),
    ("armv7l", "arm"), ("i686", "x86"), ("riscv64", "riscv64"),
])
def test_arch_family(machine: str, family: str) -> None:
    assert arch_family(machine) == family


def test_no_emulation_signals_on_a_consistent_machine(tmp_path) -> None:
    assert detect_emulation("x86_64", environ={}, cpuinfo=X86_CPUINFO, binfmt_dir=str(tmp_path)) == []
    assert detect_emulation("aarch64", environ={"EDGEGUARD_EMULATED": "0"}, cpuinfo=N1_CPUINFO,
                            binfmt_dir=str(tmp_path)) == []


def test_emulation_signals(tmp_path) -> None:
    # qemu-user without a faked /proc/cpuinfo shows the x86 host's file to an aarch64 guest.
    assert detect_emulation("aarch64", environ={}, cpuinfo=X86_CPUINFO, binfmt_dir=str(tmp_path)) == ["cpuinfo:x86_64"]
    env = {"EDGEGUARD_EMULATED": "qemu-user", "QEMU_LD_PREFIX": "/sysroot", "QEMU_CPU": "neoverse-n1"}
    assert detect_emulation("aarch64", environ=env, cpuinfo=N1_CPUINFO, binfmt_dir=str(tmp_path)) == [
        "env:EDGEGUARD_EMULATED", "env:QEMU_LD_PREFIX", "env:QEMU_CPU"]
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64\n")
    assert detect_emulation("aarch64", environ={}, cpuinfo=N1_CPUINFO, binfmt_dir=str(tmp_path)) == ["binfmt:qemu-aarch64"]
    (tmp_path / "qemu-aarch64").write_text("disabled\n")
    assert detect_emulation("aarch64", environ={}, cpuinfo=N1_CPUINFO, binfmt_dir=str(tmp_path)) == []


def test_arm_cpuinfo_features() -> None:
    pi4 = fpmod._arm_features_from_cpuinfo(fpmod._cpuinfo_fields(PI4_CPUINFO))
    assert pi4 == {"neon": True, "aes": False, "pmull": False, "sha2": False, "sha3": False, "sve": False}
    n1 = fpmod._arm_features_from_cpuinfo(fpmod._cpuinfo_fields(N1_CPUINFO))
    assert n1["aes"] and n1["pmull"] and n1["sha2"] and n1["neon"]


def test_arm_cpu_model_from_part_number() -> None:
    assert fpmod._cpu_model("Linux", fpmod._cpuinfo_fields(PI4_CPUINFO)) == "Arm Cortex-A72"
    assert fpmod._cpu_model("Linux", fpmod._cpuinfo_fields(N1_CPUINFO)) == "Arm Neoverse-N1"
    other = fpmod._cpuinfo_fields("CPU implementer\t: 0x61\nCPU part\t: 0x022\n")
    assert fpmod._cpu_model("Linux", other) == "implementer 0x61 part 0x022"


def test_fingerprint_of_this_machine() -> None:
    fp = fingerprint()
    assert fp["arch"] == arch_family(platform.machine())
    assert fp["hardware_threads"] == _core.hardware_threads() >= 1
    assert fp["versions"]["openssl"] == _core.openssl_version()
    assert fp["versions"]["python"] == platform.python_version()
    assert fp["emulated"] == bool(detect_emulation())
    if platform.system() == "Linux" and fp["arch"] == "x86_64":
        assert fp["isa_source"] == "cpuinfo"
        assert set(fp["isa"]) == set(fpmod.X86_FEATURES)
    if platform.system() == "Linux" and fp["arch"] == "aarch64":
        assert fp["isa_source"] == "hwcap"
        assert set(fp["isa"]) == set(fpmod._ARM64_HWCAP)
        assert fp["isa"]["neon"]  # mandatory in ARMv8-A Linux userspace


def _fp(arch: str, **isa: bool) -> dict:
    return {"arch": arch, "isa": isa, "emulated": False}


def _doc(fp: dict, aes_open: float, chacha_open: float) -> dict:
    summary = [{"cipher": AES_GCM, "open_1t_bytes_per_s": aes_open},
               {"cipher": CHACHA, "open_1t_bytes_per_s": chacha_open}]
    return {"fingerprint": fp, "suites": {"crypto": {"summary": summary}}}


def test_choose_cipher_from_features() -> None:
    assert choose_cipher(_fp("aarch64", neon=True, aes=False, pmull=False)) == CHACHA
    assert choose_cipher(_fp("aarch64", neon=True, aes=True, pmull=False)) == CHACHA
    assert choose_cipher(_fp("arm", neon=True, aes=False)) == CHACHA
    assert choose_cipher(_fp("aarch64", neon=True, aes=True, pmull=True)) == AES_GCM
    assert choose_cipher(_fp("x86_64", aes=False, pclmulqdq=True)) == CHACHA
    assert choose_cipher(_fp("x86_64", aes=True, pclmulqdq=True)) == AES_GCM
    assert choose_cipher(_fp("riscv64")) == AES_GCM  # nothing known: the default


def test_choose_cipher_from_bench_results() -> None:
    arm = _fp("aarch64", aes=True, pmull=True)
    assert choose_cipher(_doc(arm, aes_open=1e9, chacha_open=2e9)) == CHACHA
    assert choose_cipher(_doc(arm, aes_open=3e9, chacha_open=2e9)) == AES_GCM
    # Missing hardware wins over measurements; emulated measurements are ignored.
    assert choose_cipher(_doc(_fp("aarch64", aes=False, pmull=False), aes_open=9e9, chacha_open=1e9)) == CHACHA
    assert choose_cipher(_doc(dict(arm, emulated=True), aes_open=1e9, chacha_open=2e9)) == AES_GCM
    # CPU-time figures win over wall-clock ones (which also measure other jobs on the machine).
    doc = _doc(arm, aes_open=3e9, chacha_open=2e9)
    doc["suites"]["crypto"]["summary"][0]["open_1t_bytes_per_cpu_s"] = 1e9
    doc["suites"]["crypto"]["summary"][1]["open_1t_bytes_per_cpu_s"] = 2e9
    assert choose_cipher(doc) == CHACHA
    with pytest.raises(ValueError):
        choose_cipher({"suites": {}})
    assert choose_cipher() in (AES_GCM, CHACHA)
