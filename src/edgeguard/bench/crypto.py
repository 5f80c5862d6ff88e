"""The crypto throughput suite: the native core's seal/open/digest next to ``openssl speed``.

Per cipher, payload size and thread count it times whole ``seal_chunks``, ``open_chunks`` (from
memory) and ``digest_chunks`` calls: one untimed warm-up call (it also faults in the output
pages), then several timed repetitions, reported as the median. In the same run it measures
``openssl speed -evp`` for both AEADs and SHA-256 at 1 MiB blocks (and SHA-256 at 16 KiB), and
derives the single-core limit of a chunked open, which must both authenticate and hash every
byte: ``1 / (1/aead + 1/sha256)``. The goal is open >= 0.9x that limit on one thread, with
near-linear scaling across real cores.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from edgeguard import _core
from edgeguard.bench.fingerprint import AES_GCM, CHACHA

CIPHERS = (AES_GCM, CHACHA)
OPERATIONS = ("seal", "open", "digest")
MIB = 1 << 20
GOAL_OPEN_OVER_LIMIT = 0.9
# openssl speed's names for what we measure (its -evp names are case-insensitive).
OPENSSL_ALGORITHMS = {AES_GCM: "aes-256-gcm", CHACHA: "chacha20-poly1305", "sha256": "sha256"}


class BenchError(RuntimeError):
    """A measurement could not be taken (openssl missing or unparsable, the core failed)."""


@dataclass
class CryptoConfig:
    """What the crypto suite measures. ``quick()`` and ``full()`` are the two presets."""

    payload_sizes: list[int]
    threads: list[int]
    chunk_size: int = 1 * MIB
    repetitions: int = 3
    warmup: int = 1
    openssl: str = "openssl"
    openssl_seconds: int = 1
    openssl_block_sizes: dict[str, list[int]] = field(
        default_factory=lambda: {AES_GCM: [MIB], CHACHA: [MIB], "sha256": [MIB, 16 * 1024]}
    )
    ciphers: Sequence[str] = CIPHERS

    @staticmethod
    def quick(threads: list[int] | None = None) -> CryptoConfig:
        return CryptoConfig(payload_sizes=[16 * MIB], threads=threads or default_threads())

    @staticmethod
    def full(threads: list[int] | None = None, available_bytes: int | None = None) -> CryptoConfig:
        return CryptoConfig(
            payload_sizes=full_payload_sizes(available_bytes), threads=threads or default_threads(), repetitions=5
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "payload_sizes": list(self.payload_sizes),
            "threads": list(self.threads),
            "chunk_size": self.chunk_size,
            "repetitions": self.repetitions,
            "warmup": self.warmup,
            "openssl_seconds": self.openssl_seconds,
            "openssl_block_sizes": {k: list(v) for k, v in self.openssl_block_sizes.items()},
        }


def default_threads() -> list[int]:
    """1, 2, ..., every hardware thread (powers of two plus the total beyond 8 threads)."""
    n = _core.hardware_threads()
    if n <= 8:
        return list(range(1, n + 1))
    out = [1]
    while out[-1] * 2 < n:
        out.append(out[-1] * 2)
    return out + [n]


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def full_payload_sizes(available_bytes: int | None = None) -> list[int]:
    """64 MiB, 256 MiB and 1 GiB, dropping sizes whose three buffers (plaintext, sealed, opened)
    would take more than half the available memory. Always keeps 64 MiB."""
    avail = available_memory() if available_bytes is None else available_bytes
    sizes = [64 * MIB, 256 * MIB, 1024 * MIB]
    if avail is None:
        return sizes[:1]
    return [s for s in sizes if s == sizes[0] or 3.2 * s <= avail / 2]


# --- openssl speed --------------------------------------------------------------------------

_SPEED_LINE = re.compile(r"^\+F:\d+:([^:]+):(.+)$")


def parse_openssl_speed(output: str) -> dict[int, float]:
    """Parses ``openssl speed -mr`` output into {block bytes: bytes per second}.

    Raises BenchError when the output has no result line.
    """
    headers = re.findall(r"^\+H((?::\d+)+)$", output, re.M)
    blocks = [int(b) for b in headers[-1].split(":")[1:]] if headers else []
    for line in output.splitlines():
        m = _SPEED_LINE.match(line.strip())
        if m:
            values = [float(v) for v in m.group(2).split(":")]
            if len(values) == len(blocks):
                return dict(zip(blocks, values, strict=True))
    raise BenchError("no result in openssl speed output")


def openssl_version(openssl: str) -> str:
    """``openssl version`` of the given command. Raises BenchError if it does not run."""
    try:
        out = subprocess.run([openssl, "version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise BenchError(f"cannot run {openssl!r} version: {e}") from e
    return out.stdout.strip()


def openssl_speed(openssl: str, algorithm: str, block: int, seconds: int) -> float:
    """Bytes per second of ``openssl speed -evp ALGORITHM`` at one block size.

    Raises BenchError if openssl fails or prints no result.
    """
    cmd = [openssl, "speed", "-mr", "-bytes", str(block), "-seconds", str(seconds), "-evp", algorithm]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + 10 * seconds)
    except (OSError, subprocess.SubprocessError) as e:
        raise BenchError(f"cannot run {' '.join(cmd)}: {e}") from e
    if out.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return parse_openssl_speed(out.stdout)[block]


# --- timing of the native core --------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.total, self.done = max(total, 1), 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _payload(size: int) -> bytearray:
    # Data-independent ciphers: the content only has to be incompressible-looking, not unique.
    tile = os.urandom(min(size, MIB))
    buf = bytearray(tile * (size // len(tile)) if tile else b"")
    buf += tile[: size - len(buf)]
    return buf


def _time(fn: Callable[[], object], warmup: int, repetitions: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds (all threads) of each timed repetition."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repetitions):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _measure_size(cfg: CryptoConfig, size: int, progress: Progress) -> list[dict[str, Any]]:
    rows = []
    plaintext = _payload(size)
    sealed = bytearray(_core.sealed_len(size, cfg.chunk_size))
    opened = bytearray(size)
    # Benchmark-only key material: random per run and never written anywhere.
    key, prefix, header = os.urandom(32), os.urandom(7), os.urandom(32)
    for cipher in cfg.ciphers:
        root = _core.seal_chunks(cipher, key, prefix, header, cfg.chunk_size, plaintext, sealed, 1)
        for threads in cfg.threads:
            ops: dict[str, Callable[[], object]] = {
                "seal": partial(_core.seal_chunks, cipher, key, prefix, header, cfg.chunk_size, plaintext, sealed,
                                threads),
                "open": partial(_core.open_chunks, cipher, key, prefix, header, cfg.chunk_size, size, sealed, 0,
                                opened, root, threads),
                "digest": partial(_core.digest_chunks, cfg.chunk_size, size, sealed, 0, threads),
            }
            for op, fn in ops.items():
                progress.step(f"{cipher} {op} {size // MIB} MiB {threads}t")
                samples, cpu = _time(fn, cfg.warmup, cfg.repetitions)
                median, cpu_median = statistics.median(samples), statistics.median(cpu)
                rows.append({
                    "cipher": cipher, "operation": op, "payload_bytes": size, "threads": threads,
                    "samples_s": samples, "median_s": median, "bytes_per_s": size / median,
                    "cpu_samples_s": cpu, "cpu_median_s": cpu_median,
                    # CPU time does not grow while a thread waits for a core another job holds.
                    "bytes_per_cpu_s": size / cpu_median if cpu_median > 0 else None,
                })
        # The timed calls must have done real work: a failed open would be fast and wrong.
        if not _core.open_chunks(cipher, key, prefix, header, cfg.chunk_size, size, sealed, 0, opened, root, 0):
            raise BenchError(f"{cipher}: open of the benchmark payload failed")
        if opened != plaintext:
            raise BenchError(f"{cipher}: open returned different bytes")
    return rows


def _ratio_or_none(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def summarize(rows: list[dict[str, Any]], speed: list[dict[str, Any]], ciphers: Sequence[str]) -> list[dict[str, Any]]:
    """Per cipher, at the largest payload: single-thread seal/open, the openssl-derived limit,
    open/limit, and the thread scaling of open.

    ``openssl speed`` divides by user CPU time (unless -elapsed), so the goal ratio
    ``open_over_limit`` uses the engine's single-thread bytes per CPU-second too: on a machine
    where other jobs take the core both sides then measure the same thing. ``open_over_limit_wall``
    uses wall-clock time, and ``cpu_share_1t`` (CPU over wall time of the one-thread open) says
    how much of a core the run got. Scaling gives the wall-clock speedup and efficiency, and the
    CPU efficiency (bytes per CPU-second at t threads over that at one thread), which stays near
    1 when the engine scales even if other jobs hold the cores.
    """
    def speed_at(alg: str, block: int = MIB) -> float | None:
        for r in speed:
            if r["algorithm"] == alg and r["block_bytes"] == block:
                rate: float = r["bytes_per_s"]
                return rate
        return None

    out = []
    sha = speed_at("sha256")
    for cipher in ciphers:
        mine = [r for r in rows if r["cipher"] == cipher]
        size = max(r["payload_bytes"] for r in mine)
        at = {(r["operation"], r["threads"]): r for r in mine if r["payload_bytes"] == size}
        wall = {k: r["bytes_per_s"] for k, r in at.items()}
        cpu = {k: r.get("bytes_per_cpu_s") for k, r in at.items()}
        aead = speed_at(cipher)
        limit = 1 / (1 / aead + 1 / sha) if aead and sha else None
        open1, open1_cpu = wall[("open", 1)], cpu[("open", 1)]
        ratio = _ratio_or_none(open1_cpu, limit)
        out.append({
            "cipher": cipher,
            "payload_bytes": size,
            "seal_1t_bytes_per_s": wall[("seal", 1)],
            "open_1t_bytes_per_s": open1,
            "seal_1t_bytes_per_cpu_s": cpu[("seal", 1)],
            "open_1t_bytes_per_cpu_s": open1_cpu,
            "cpu_share_1t": _ratio_or_none(at[("open", 1)].get("cpu_median_s"), at[("open", 1)]["median_s"]),
            "openssl_aead_bytes_per_s": aead,
            "openssl_sha256_bytes_per_s": sha,
            "single_core_limit_bytes_per_s": limit,
            "open_over_limit": ratio,
            "open_over_limit_wall": _ratio_or_none(open1, limit),
            "goal_open_over_limit": GOAL_OPEN_OVER_LIMIT,
            "meets_goal": None if ratio is None else ratio >= GOAL_OPEN_OVER_LIMIT,
            "scaling": [
                {
                    "threads": t,
                    "seal_bytes_per_s": wall[("seal", t)],
                    "open_bytes_per_s": wall[("open", t)],
                    "open_speedup": wall[("open", t)] / open1,
                    "open_efficiency": wall[("open", t)] / open1 / t,
                    "open_cpu_efficiency": _ratio_or_none(cpu[("open", t)], open1_cpu),
                }
                for t in sorted({t for (_, t) in at})
            ],
        })
    return out


def run_crypto_suite(cfg: CryptoConfig, progress: bool | None = None) -> dict[str, Any]:
    """Runs the suite and returns its section of the result document (schema: ``crypto``).
    Adds 1 to ``cfg.threads`` when missing. ``progress``: None draws a bar only on a terminal.

    Raises BenchError if openssl cannot be run or parsed, the configuration is empty, or the core
    fails to round-trip; ValueError if the core rejects the chunk size.
    """
    if shutil.which(cfg.openssl) is None and not os.path.exists(cfg.openssl):
        raise BenchError(f"openssl command not found: {cfg.openssl!r}")
    if cfg.repetitions < 1 or cfg.warmup < 0 or not cfg.payload_sizes:
        raise BenchError("need at least one payload size and one repetition")
    for size in cfg.payload_sizes:
        _core.sealed_len(size, cfg.chunk_size)  # ValueError now, not after the openssl runs
    # One thread is the baseline of every scaling figure, so it is always measured.
    cfg.threads = sorted(set(cfg.threads) | {1})
    speed_jobs = [(alg, b) for alg, blocks in cfg.openssl_block_sizes.items() for b in blocks]
    bar = Progress(len(speed_jobs) + len(cfg.payload_sizes) * len(cfg.ciphers) * len(cfg.threads) * len(OPERATIONS), progress)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    t0 = time.monotonic()
    try:
        speed = []
        for alg, block in speed_jobs:
            bar.step(f"openssl speed {alg} {block}")
            bps = openssl_speed(cfg.openssl, OPENSSL_ALGORITHMS[alg], block, cfg.openssl_seconds)
            speed.append({"algorithm": alg, "block_bytes": block, "bytes_per_s": bps})
        rows: list[dict[str, Any]] = []
        for size in cfg.payload_sizes:
            rows += _measure_size(cfg, size, bar)
    finally:
        bar.close()
    return {
        "config": cfg.as_json(),
        "openssl": {"command": cfg.openssl, "version": openssl_version(cfg.openssl), "speed": speed},
        "throughput": rows,
        "summary": summarize(rows, speed, cfg.ciphers),
        "duration_s": time.monotonic() - t0,
        # Other load on the machine during the run explains poor thread scaling.
        "load_average": load_before,
    }
