"""Residue scan: which 64-byte slices of a sealed model's weights are left in a process's memory.

A child process (``python -m edgeguard.bench._residue_child``) loads a sealed model, optionally
runs inferences, closes the session and waits; this process then reads every readable mapping of
the child (``/proc/PID/maps`` + ``/proc/PID/mem``; needs ptrace rights over the child: the same
user, or root) and looks for every 64-byte slice of every protected weight tensor (the tensors of
the sealed weights section, i.e. every tensor of 1024 bytes or more). The needles stay in this
process; the child never holds the plaintext weights except through edgeguard.

Slices are cut at 64-byte offsets of each tensor; a copy anywhere in memory is matched at any
2-byte aligned address (every element type here is at least 2 bytes wide and every copy onnxruntime
or numpy makes keeps element alignment). Slices with fewer than 8 distinct 32-bit words, or fewer
than 3 among their first four (zeros, constant runs: they would match unrelated memory and
identify nothing; the first 16 bytes are the search key), are skipped and counted.

    python -m edgeguard.bench.residue SEALED --identity DEV.pem --trust PUB.pem \
        [--hygiene strict] [--runs 1] [--batch 4] [--threads 1] [--stage closed]

Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SLICE = 64
_KEY_BITS = 22  # prefilter table: 4M booleans


@dataclass
class Needles:
    """64-byte slices of the weights, indexed by their first 8 bytes."""

    slices: np.ndarray  # (n, 64) uint8
    owners: list[tuple[str, int]]  # (tensor name, byte offset) per slice
    keys: np.ndarray  # sorted uint64 keys
    order: np.ndarray  # slice index per sorted key
    table: np.ndarray  # bool prefilter over the key's low bits
    skipped: int = 0

    @staticmethod
    def from_tensors(tensors: Mapping[str, np.ndarray]) -> Needles:
        rows: list[np.ndarray] = []
        owners: list[tuple[str, int]] = []
        skipped = 0
        seen: set[bytes] = set()
        for name, array in tensors.items():
            raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
            n = len(raw) // SLICE
            if n == 0:
                continue
            cut = raw[: n * SLICE].reshape(n, SLICE)
            words = cut.view(np.uint32)
            for i in range(n):
                row = cut[i]
                b = row.tobytes()
                if len(np.unique(words[i])) < 8 or len(np.unique(words[i, :4])) < 3 or b in seen:
                    skipped += 1
                    continue
                seen.add(b)
                rows.append(row.copy())
                owners.append((name, i * SLICE))
        slices = np.stack(rows) if rows else np.zeros((0, SLICE), np.uint8)
        pairs = slices[:, :16].copy().view(np.uint64).reshape(-1, 2)
        keys = _mix(pairs[:, 0], pairs[:, 1])
        order = np.argsort(keys, kind="stable")
        table = np.zeros(1 << _KEY_BITS, dtype=bool)
        table[(keys & np.uint64((1 << _KEY_BITS) - 1)).astype(np.int64)] = True
        return Needles(slices, owners, keys[order], order, table, skipped)

    def find(self, data: bytes | memoryview) -> Iterator[tuple[int, int]]:
        """(offset in data, slice index) of every needle found at a 2-byte aligned offset."""
        buf = np.frombuffer(data, dtype=np.uint8)
        mask = np.uint64((1 << _KEY_BITS) - 1)
        for phase in range(0, 8, 2):
            usable = (len(buf) - phase) // 8
            if usable <= 0:
                continue
            words = buf[phase : phase + usable * 8].view(np.uint64)
            if len(words) < 2:
                continue
            mixed = _mix(words[:-1], words[1:])
            hits = np.flatnonzero(self.table[(mixed & mask).astype(np.int64)])
            if not len(hits):
                continue
            cand = mixed[hits]
            pos = np.searchsorted(self.keys, cand)
            pos[pos >= len(self.keys)] = 0
            exact = self.keys[pos] == cand
            for h, p in zip(hits[exact], pos[exact], strict=True):
                start = phase + int(h) * 8
                if start + SLICE > len(buf):
                    continue
                window = buf[start : start + SLICE]
                j = int(p)
                while j < len(self.keys) and self.keys[j] == self.keys[p]:
                    k = int(self.order[j])
                    if np.array_equal(window, self.slices[k]):
                        yield start, k
                    j += 1


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 64-bit key from two consecutive 8-byte words (the first 16 bytes of a slice)."""
    with np.errstate(over="ignore"):
        rot = (b << np.uint64(29)) | (b >> np.uint64(35))
        mixed: np.ndarray = (a ^ (rot * np.uint64(0x9E3779B97F4A7C15))).astype(np.uint64)
    return mixed


@dataclass
class Region:
    start: int
    end: int
    perms: str
    name: str

    @property
    def kind(self) -> str:
        if self.name in ("[stack]", "[heap]"):
            return self.name[1:-1]
        if self.name.startswith("[anon:") or not self.name:
            return "anonymous"
        if self.name.startswith("/"):
            return "file"
        return self.name.strip("[]")


@dataclass
class ScanResult:
    """Hits per mapping kind, and the distinct slices found."""

    needles: int
    skipped: int
    found_slices: set[int] = field(default_factory=set)
    hits: list[dict[str, Any]] = field(default_factory=list)
    scanned_bytes: int = 0
    unreadable: int = 0

    def as_json(self, owners: list[tuple[str, int]], limit: int = 20) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        by_region: dict[str, int] = {}
        for h in self.hits:
            by_kind[h["kind"]] = by_kind.get(h["kind"], 0) + 1
            key = f"{h['region']} {h['kind']}"
            by_region[key] = by_region.get(key, 0) + 1
        tensors = sorted({owners[i][0] for i in self.found_slices})
        return {"needles": self.needles, "skipped_low_entropy": self.skipped, "found_slices": len(self.found_slices),
                "found_bytes": SLICE * len(self.found_slices), "hits": len(self.hits), "hits_by_kind": by_kind,
                "hits_by_region": by_region,
                "tensors": tensors[:limit], "examples": self.hits[:limit], "scanned_bytes": self.scanned_bytes,
                "unreadable_regions": self.unreadable}


def regions(pid: int) -> list[Region]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(v, 16) for v in parts[0].split("-"))
            out.append(Region(start, end, parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return out


def scan(pid: int, needles: Needles, skip_files: bool = True, block: int = 64 << 20) -> ScanResult:
    """Reads every readable mapping of `pid` and finds the needles in it.

    File-backed mappings (libraries, the read-only parts of the model file...) are skipped when
    `skip_files`: they hold what is on disk, and a sealed file holds no plaintext.
    """
    result = ScanResult(needles=len(needles.slices), skipped=needles.skipped)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for r in regions(pid):
            if "r" not in r.perms or r.name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            if skip_files and r.kind == "file":
                continue
            for start in range(r.start, r.end, block):
                size = min(block, r.end - start) + (SLICE if start + block < r.end else 0)
                size = min(size, r.end - start)
                try:
                    mem.seek(start)
                    data = mem.read(size)
                except OSError:
                    result.unreadable += 1
                    break
                result.scanned_bytes += len(data)
                for offset, k in needles.find(data):
                    if offset >= block:  # the overlap belongs to the next block
                        continue
                    result.found_slices.add(k)
                    result.hits.append({"address": hex(start + offset), "kind": r.kind, "region": f"{r.start:x}-{r.end:x}",
                                        "region_name": r.name, "offset_in_region": start + offset - r.start})
    return result


def load_weights(sealed: str, identity: str, trust: str) -> dict[str, np.ndarray]:
    """Copies of the sealed model's protected tensors (the weights section), for use as needles."""
    from edgeguard.runtime import open_sealed

    with open_sealed(sealed, identity=identity, trust=trust) as t:
        return {name: np.array(a, copy=True) for name, a in t.tensors.items()}


def run_child(spec: Mapping[str, Any], needles: Needles, stages: tuple[str, ...] = ("closed",),
              env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Starts the residue child with `spec`, scans it at each of `stages` it reaches ("open": the
    session loaded and run; "closed": after close() and gc), and returns the scan results.

    Raises RuntimeError if the child fails.
    """
    cmd = [sys.executable, "-m", "edgeguard.bench._residue_child", json.dumps(dict(spec))]
    child_env = dict(os.environ if env is None else env)
    out: dict[str, Any] = {"spec": dict(spec)}
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            for line in proc.stdout:
                msg = json.loads(line)
                stage = msg["stage"]
                out.setdefault("child", {}).update(msg)
                if stage == "done":
                    break
                if stage in stages:
                    out[stage] = scan(proc.pid, needles).as_json(needles.owners)
                proc.stdin.write("next\n")
                proc.stdin.flush()
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
            err = proc.stderr.read()
            rc = proc.wait(timeout=60)
    if rc != 0:
        raise RuntimeError(f"residue child failed ({rc}): {err.strip()[-800:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeguard.bench.residue", description=__doc__.split("\n\n")[0])
    p.add_argument("sealed")
    p.add_argument("--identity", required=True)
    p.add_argument("--trust", required=True)
    p.add_argument("--hygiene", default="strict")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shape", action="append", default=[], help="NAME=D0xD1x... input shape (dynamic dims)")
    p.add_argument("--option", action="append", default=[], help="extra child option KEY=VALUE (JSON value)")
    p.add_argument("--stage", action="append", choices=("open", "closed"), help="when to scan (default: closed)")
    args = p.parse_args(argv)
    needles = Needles.from_tensors(load_weights(args.sealed, args.identity, args.trust))
    spec: dict[str, Any] = {"sealed": args.sealed, "identity": args.identity, "trust": args.trust,
                            "hygiene": args.hygiene, "runs": args.runs, "batch": args.batch, "threads": args.threads,
                            "shapes": dict(_shape(s) for s in args.shape)}
    for kv in args.option:
        k, v = kv.split("=", 1)
        spec[k] = json.loads(v)
    result = run_child(spec, needles, tuple(args.stage or ("closed",)))
    print(json.dumps(result, indent=2))
    return 0


def _shape(text: str) -> tuple[str, list[int]]:
    name, dims = text.split("=", 1)
    return name, [int(d) for d in dims.lower().split("x")]


if __name__ == "__main__":
    sys.exit(main())


GOAL_STRICT_RESIDUE = 0  # 64-byte slices of any protected weight left anywhere after close


def run_residue_suite(workload: Any, shapes: Mapping[str, Any] | None = None, runs: int = 3, batch: int = 32,
                      hardened: bool | None = None, progress: bool | None = None) -> dict[str, Any]:
    """The ``residue`` section: for one sealed workload, every 64-byte slice of every protected
    tensor searched in a child process's memory while its session is open and after close(), per
    mode and intra-op thread count (strict with and without inference at 1 and 2 threads; fast at 2,
    also with glibc's wipe-on-free; hardened at 2 where the process may lock all its memory).

    Raises RuntimeError if a child fails (not Linux, no ptrace rights over the child).
    """
    import time

    from edgeguard.bench.crypto import Progress
    from edgeguard.bench.runtime import can_harden

    t0 = time.monotonic()
    ident, trust = str(workload.identity), str(workload.trust)
    needles = Needles.from_tensors(load_weights(str(workload.sealed), ident, trust))
    harden = {"lock_memory": True, "wipe_freed": True}
    cases: list[tuple[str, int, int, dict[str, Any]]] = [
        ("strict", 0, 1, {}), ("strict", runs, 1, {}), ("strict", runs, 2, {}),
        ("fast", runs, 2, {}), ("fast", runs, 2, {"mallopt_perturb": 0xA5}),
    ]
    if can_harden() if hardened is None else hardened:
        cases.append(("hardened", runs, 2, {"harden": harden}))
    bar = Progress(len(cases), progress)
    rows = []
    try:
        for mode, n, threads, extra in cases:
            bar.step(f"residue {mode} t{threads} runs {n}")
            spec = {"sealed": str(workload.sealed), "identity": ident, "trust": trust, "hygiene": mode, "runs": n,
                    "batch": batch, "threads": threads, "shapes": dict(shapes or {}), **extra}
            r = run_child(spec, needles, ("open", "closed"))
            variant = "wipe_freed" if extra else "default"
            rows.append({"mode": mode, "intra_op_threads": threads, "runs": n, "batch": batch, "variant": variant,
                         "found_open": r["open"]["found_slices"], "found_after_close": r["closed"]["found_slices"],
                         "after_close_by_kind": r["closed"]["hits_by_kind"]})
    finally:
        bar.close()
    worst = max(row["found_after_close"] for row in rows if row["mode"] == "strict")
    return {"config": {"runs": runs, "batch": batch, "slice_bytes": SLICE}, "model": workload.as_json(),
            "needles": len(needles.slices), "skipped_low_entropy": needles.skipped, "results": rows,
            "goals": {"strict_residue": {"value": worst, "limit": GOAL_STRICT_RESIDUE, "met": worst <= GOAL_STRICT_RESIDUE}},
            "duration_s": time.monotonic() - t0}
