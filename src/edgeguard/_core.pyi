"""Private native core of edgeguard (csrc/). Bytes in, bytes out; no policy, no header knowledge.

Buffers must be C-contiguous (TypeError otherwise), writable where the core writes (TypeError) and
exactly as long as the core writes (ValueError). Argument TypeErrors of calls that take a key never
list the arguments.
"""

from collections.abc import Callable

from typing_extensions import Buffer

TAG_LEN: int
NONCE_PREFIX_LEN: int
MAX_CHUNK_SIZE: int
MAX_THREADS: int  # worker threads per call; larger `threads` raise ValueError (0: all cores, capped)
SIGNALS: tuple[str, ...]  # detector signal names, in the order of csrc/detector.h's enum Signal

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
