"""Private native core of edgeguard (csrc/). Bytes in, bytes out; no policy, no header knowledge.

Buffers must be C-contiguous (TypeError otherwise), writable where the core writes (TypeError) and
exactly as long as the core writes (ValueError). Argument TypeErrors of calls that take a key never
list the arguments.
"""

from collections.abc import Callable, Sequence
from typing import Any

from numpy import float32
from numpy.typing import NDArray
from typing_extensions import Buffer

TAG_LEN: int
NONCE_PREFIX_LEN: int
MAX_CHUNK_SIZE: int
MAX_THREADS: int  # worker threads per call; larger `threads` raise ValueError (0: all cores, capped)
SIGNALS: tuple[str, ...]  # detector signal names, in the order of csrc/detector.h's enum Signal
DETECTOR_COLUMNS: int  # columns of Detector's batch tables (csrc/detector_bindings.cpp, kColumns)

def openssl_version() -> str: ...
def hardware_threads() -> int: ...
def sealed_len(plaintext_len: int, chunk_size: int) -> int: ...
def seal_chunks(
    cipher: str,
    key: bytes,
    nonce_prefix: bytes,
    header_digest: bytes,
    chunk_size: int,
    plaintext: Buffer,
    out: Buffer,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """Encrypts `plaintext` into `out` (exactly sealed_len bytes); returns the 32-byte chunk root."""

def open_chunks(
    cipher: str,
    key: bytes,
    nonce_prefix: bytes,
    header_digest: bytes,
    chunk_size: int,
    plaintext_len: int,
    source: Buffer | int,
    offset: int,
    out: Buffer,
    expected_root: bytes,
    threads: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> bool:
    """All or nothing: True only if every tag verifies and the chunk root matches; else `out` is wiped."""

def digest_chunks(chunk_size: int, plaintext_len: int, source: Buffer | int, offset: int, threads: int = 0) -> bytes | None:
    """The chunk root of stored chunks (no key needed); None if a read fails."""

# One-shot AEAD through the very same per-chunk call the payload path uses, with an arbitrary
# 12-byte nonce and AAD and a 16-byte tag. It exists for known-answer vectors (Wycheproof, see
# tests/test_wycheproof.py) only: the file format never calls it and it is not API.
def aead_seal(cipher: str, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """ciphertext || 16-byte tag. Raises ValueError for a bad cipher name or key/nonce length."""

def aead_open(cipher: str, key: bytes, nonce: bytes, aad: bytes, sealed: bytes) -> bytes | None:
    """The plaintext, or None unless the tag verifies. Raises ValueError for bad parameters."""

class SecureBuffer:
    """Guard-paged, non-dumpable, wipe-on-fork, mlocked (best effort) memory; buffer protocol."""

    def __init__(self, size: int) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def close(self) -> None:
        """Wipes (OPENSSL_cleanse), unlocks and releases the pages; views read zeros afterwards.

        Whatever a view taken earlier writes after close() is wiped again when that view is released.
        """
    def make_readonly(self) -> None:
        """Write-protects the pages. Raises BufferError while views are outstanding or after close."""
    def __enter__(self) -> SecureBuffer: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def locked(self) -> bool: ...
    @property
    def lock_error(self) -> str | None: ...
    @property
    def dontdump(self) -> bool: ...
    @property
    def fork_protection(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def exports(self) -> int: ...

_Stats = tuple[float, float, float, float, float, float, float]
# observe / observe_malformed: (risk, peak_risk, queries, first_alert, stats, event, fleet_risk,
# fleet_first_alert, fleet_stats); event: 0 new, 1 perturbation step, 2 repeat.
_Observation = tuple[float, float, int, bool, _Stats, int, float, bool, _Stats]

class Detector:
    """The extraction-query detector (csrc/detector.h). Raises ValueError for inconsistent
    arguments; thread-safe; releases the GIL while scoring."""

    def __init__(
        self,
        *,
        dim: int,
        input_shape: Sequence[int],
        pool: Sequence[int],
        sketch_dim: int,
        classes: int,
        output_kind: int = 0,
        mean: Any,
        components: Any,
        sketch_center: Any,
        sketch_scale: Any,
        lo: float,
        hi: float,
        mahal_ref: float,
        resid_ref: float,
        novelty_slack: float,
        novelty_cap: float,
        repeat_dist: float,
        near_dist: float,
        chain_slack: float,
        chain_weight_cap: float,
        low_margin: float,
        margin_slack: float,
        invalid_decay: float,
        salt: int,
        thresholds: Sequence[float],
        fleet_thresholds: Sequence[float],
        memory: int,
        bloom_bits: int,
        fleet_memory: int,
        fleet_bloom_bits: int,
        max_clients: int,
    ) -> None: ...
    def observe(self, client: str, x: Any, y: Any) -> _Observation: ...
    def observe_batch(self, client: str, X: Any, Y: Any) -> NDArray[float32]: ...
    def observe_features(self, client: str, Z: Any, novelty: Any, valid: Any, low_margin: Any) -> NDArray[float32]: ...
    def observe_malformed(self, client: str) -> _Observation: ...
    def known(self, client: str) -> bool: ...
    def forget(self, client: str) -> None: ...
    def clients(self) -> int: ...
    def evictions(self) -> int: ...
    def state_bytes_per_client(self) -> int: ...
    def fleet_state_bytes(self) -> int: ...
    def pooled_dim(self) -> int: ...
    def save(self) -> bytes: ...
    def restore(self, blob: bytes) -> None: ...
    def save_fleet(self) -> bytes: ...
    def merge_fleet(self, blob: bytes) -> None: ...

def harden_process() -> None:
    """prctl(PR_SET_DUMPABLE, 0). Raises OSError on failure."""

def is_dumpable() -> bool: ...
def wipe_stack(bytes: int) -> int:
    """Zero up to `bytes` of the calling thread's stack below this call; returns the bytes wiped."""

def wipe_cached_thread_stacks(count: int, bytes: int) -> int:
    """Start `count` threads at once that each zero `bytes` of their (possibly reused) stack."""

def default_thread_stack_size() -> int: ...
def lock_all_memory() -> None:
    """mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT). Raises OSError on failure."""

def all_memory_locked() -> bool: ...
def set_malloc_perturb(byte: int) -> bool:
    """glibc mallopt(M_PERTURB, byte); False where unsupported."""

def malloc_perturb() -> int: ...
