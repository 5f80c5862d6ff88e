"""The verify suite: ``edgeguard verify`` against ``openssl dgst -sha256`` on the same sealed file,
both as the commands a user runs (fresh processes, so the CLI's start-up counts).

A random payload of ``size_mib`` MiB is sealed (kind raw, AES-256-GCM, 1 MiB chunks) for a
throwaway key; then, repetition after repetition in alternating order, the wall-clock time of
``edgeguard verify SEALED --trust PUB`` (signature + every chunk digest, every core) and of
``openssl dgst -sha256 SEALED`` (one SHA-256 over the file, one core), and of ``edgeguard
--version`` (the CLI's start-up alone). The file is read once beforehand so both read it from the
page cache. The commands run without ``PYTHONDONTWRITEBYTECODE`` so that the untimed first run
leaves compiled bytecode, as an installed package has (pip compiles at install time); with it set,
every run would recompile edgeguard's modules (~60-100 ms here). Goal: verify <= 1.3x openssl
(median over median).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeguard.bench.crypto import MIB, BenchError, Progress

GOAL_VERIFY_OVER_OPENSSL = 1.3


@dataclass
class VerifyConfig:
    size_mib: int = 64
    repetitions: int = 5
    openssl: str = "openssl"

    @staticmethod
    def quick() -> VerifyConfig:
        return VerifyConfig()

    @staticmethod
    def full() -> VerifyConfig:
        return VerifyConfig(size_mib=256, repetitions=7)

    def as_json(self) -> dict[str, Any]:
        return {"size_mib": self.size_mib, "repetitions": self.repetitions, "openssl": self.openssl}


def edgeguard_command() -> list[str]:
    """The `edgeguard` console script of this interpreter's environment, else ``python -m edgeguard.cli``."""
    script = Path(sys.executable).with_name("edgeguard")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgeguard.cli"]


def _timed(cmd: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:2])} ... failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    return elapsed


def _seal(tmp: Path, size: int) -> tuple[Path, Path]:
    from edgeguard.keys import SigningKey, generate_private_key, public_pem
    from edgeguard.recipients import load_recipient
    from edgeguard.seal import seal_model

    payload, sealed, trust, device = tmp / "verify.bin", tmp / "verify.sealed", tmp / "verify-publisher.pub", tmp / "verify-device.pub"
    with open(payload, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    signer = SigningKey.generate("ed25519")
    device.write_bytes(public_pem(generate_private_key("x25519").public_key()))
    trust.write_bytes(signer.verifying_key.public_pem())
    seal_model(payload, sealed, signer=signer, recipients=[load_recipient(device)], kind="raw", overwrite=True)
    payload.unlink()
    return sealed, trust


def run_verify_suite(cfg: VerifyConfig, tmp: Path, progress: bool | None = None) -> dict[str, Any]:
    """Returns the ``verify`` section.

    Raises BenchError if a command fails (openssl missing, say) or the configuration is empty.
    """
    if cfg.repetitions < 1 or cfg.size_mib < 1:
        raise BenchError("the verify suite needs at least one repetition of at least 1 MiB")
    t0 = time.monotonic()
    sealed, trust = _seal(tmp, cfg.size_mib * MIB)
    with open(sealed, "rb") as f:  # into the page cache, for both commands alike
        while f.read(8 * MIB):
            pass
    eg = edgeguard_command()
    commands = {"edgeguard_verify": [*eg, "verify", str(sealed), "--trust", str(trust)],
                "openssl_dgst": [cfg.openssl, "dgst", "-sha256", str(sealed)],
                "edgeguard_startup": [*eg, "--version"]}
    names = list(commands)
    samples: dict[str, list[float]] = {n: [] for n in names}
    bar = Progress(cfg.repetitions * len(names), progress)
    try:
        for name in names:  # one untimed run each: binaries and modules into the page cache
            _timed(commands[name])
        for r in range(cfg.repetitions):
            for name in names if r % 2 == 0 else names[::-1]:
                bar.step(f"verify #{r + 1} {name}")
                samples[name].append(_timed(commands[name]))
    finally:
        bar.close()
    medians = {n: statistics.median(s) for n, s in samples.items()}
    ratio = medians["edgeguard_verify"] / medians["openssl_dgst"]
    return {"config": cfg.as_json(), "file_bytes": sealed.stat().st_size,
            "commands": {n: {"argv0": os.path.basename(c[0]), "samples_s": samples[n], "median_s": medians[n],
                             "min_s": min(samples[n])} for n, c in commands.items()},
            "ratios": {"verify_over_openssl": ratio,
                       "verify_over_openssl_best": min(samples["edgeguard_verify"]) / min(samples["openssl_dgst"]),
                       "startup_share_of_verify": medians["edgeguard_startup"] / medians["edgeguard_verify"]},
            "goals": {"verify": {"value": ratio, "limit": GOAL_VERIFY_OVER_OPENSSL,
                                 "met": ratio <= GOAL_VERIFY_OVER_OPENSSL}},
            "duration_s": time.monotonic() - t0}
