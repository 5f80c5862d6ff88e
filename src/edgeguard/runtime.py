"""The on-device runtime: open a sealed model with the device's key, verify it, decrypt it into
locked memory and run it in onnxruntime without plaintext touching the disk.

Security properties:

* Nothing is decrypted for the caller before the publisher's signature, every chunk digest and
  every AEAD tag verified (:func:`~edgeguard.unseal.decrypt_file`); the signed validity window
  and anti-rollback are checked before any key is unwrapped. Any failure wipes the secure buffer.
* The plaintext payload lives only in a :class:`~edgeguard.secure_memory.SecureBuffer`.
  ``hygiene="strict"`` makes onnxruntime read the weights in place from it (no copy of the
  weights in onnxruntime's heap; graph optimizations and prepacking off). ``hygiene="fast"``
  lets onnxruntime copy, prepack and optimize, then wipes and releases the buffer at once.
  ``hygiene="hardened"`` reads in place like strict but lets onnxruntime prepack and optimize, in a
  process that :func:`~edgeguard.secure_memory.harden_process` locked, made non-dumpable and set
  to wipe freed memory. Strict and hardened sessions leave no slice of the weights in the process
  after ``close()`` (stack panels are wiped after each run and at close).
* onnxruntime is never allowed to write a derived model, a profile or an EP cache to disk.

This module never imports ``onnx``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import re
import sys
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import numpy as np

from . import _core, kinds
from .audit.hooks import SessionAudit
from .coverage import Coverage, graph_coverage
from .errors import CoverageError, FormatError
from .format import Header, ModelInfo
from .freshness import Clock, VersionStore, check_validity
from .keys import resolve_trust
from .kinds.onnx import WEIGHTS_LOCATION
from .recipients import resolve_identities
from .secure_memory import MemoryReport, SecureBuffer, memory_report, process_hardening
from .unseal import Opened, decrypt_file

# onnxruntime (1.32, Linux) opens a telemetry store under ~/.cache/Microsoft/DeveloperTools when it is
# imported and logs session events to it; a device runtime must write nothing. The variable only
# works if onnxruntime is not imported yet; disable_telemetry_events() stops the events otherwise.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime as ort

ort.disable_telemetry_events()

_log = logging.getLogger(__name__)
HYGIENE_MODES = ("strict", "fast", "hardened")
_STRICT_CONFIG = {
    # onnxruntime >= 1.31: use the in-memory external data in place instead of copying it.
    "session.use_external_initializer_file_buffers_directly": "1",
    # Prepacking makes an (unwipeable) reordered copy of every prepackable weight.
    "session.disable_prepacking": "1",
}
# hygiene="hardened": weights in place as in strict mode, but prepacking and graph optimizations on
# (their copies live in the process's locked, non-dumpable, wiped-on-free heap).
_HARDENED_CONFIG = {"session.use_external_initializer_file_buffers_directly": "1"}
# Bytes of the calling thread's stack zeroed below run()'s frame after every strict or hardened run:
# onnxruntime's kernels leave what they copied into stack buffers there (MLAS packs 64 KiB GEMM
# panels of the weight on the stack); measured depth on x86_64: see docs/device-guide.md.
STACK_WIPE_BYTES = 128 * 1024
# glibc caches the stacks of exited threads (40 MiB by default) and reuses them unwiped.
_GLIBC_STACK_CACHE_BYTES = 40 * 1024 * 1024
# Provider option names that make an execution provider write engines, contexts or dumps to disk.
_DISK_WRITING_OPTION = re.compile(r"cache|dump|context|profil|save|serializ", re.IGNORECASE)

IdentityLike = Any  # Identity | path | PEM bytes | "pkcs11:" URI | a sequence of these
TrustLike = Any  # TrustStore | VerifyingKey | path | PEM bytes | a sequence of these


def _open_verified(
    path: str | os.PathLike[str],
    identity: IdentityLike,
    trust: TrustLike,
    passphrase: str | bytes | None,
    clock: Clock,
    version_store: VersionStore | str | os.PathLike[str] | None,
    threads: int,
    grant: Any = None,
    revocation: Any = None,
    revocation_store: Any = None,
) -> Opened:
    from .grants import device_admission

    identities = resolve_identities(identity, passphrase)
    store = VersionStore(version_store) if isinstance(version_store, (str, os.PathLike)) else version_store
    trusted = resolve_trust(trust)
    admit_grant, admit_v1 = device_admission(identities, trusted, revocation, revocation_store, clock)

    def admit(header: Header) -> None:  # signed metadata only, before any key is unwrapped
        check_validity(header.model, clock())
        if store is not None:
            store.check(header.model.name, header.model.version)
        admit_v1(header)

    opened = decrypt_file(path, identities, trusted, allocate=SecureBuffer, threads=threads, admit=admit, grant=grant, admit_grant=admit_grant)
    if not opened.buffer.locked:
        report = memory_report(opened.buffer)
        limit = "unlimited" if report.memlock_limit is None else f"{report.memlock_limit} bytes"
        _log.warning(
            "could not lock %d bytes of decrypted model in RAM (%s; RLIMIT_MEMLOCK %s): it may be swapped out; "
            "raise the limit or grant CAP_IPC_LOCK", report.size, report.lock_error, limit,
        )  # fmt: skip
    try:
        if store is not None:  # recorded only once the whole file verified; re-checked under the store's lock
            store.check_and_record(opened.container.header.model.name, opened.container.header.model.version)
        opened.buffer.make_readonly()  # nothing writes the plaintext again; a stray write faults
    except BaseException:
        opened.buffer.close()
        raise
    return opened


def _wipe_bytes(data: bytes) -> None:
    # onnxruntime only takes a model in memory as `bytes`, which Python cannot wipe; overwrite the
    # object's storage in place once onnxruntime has parsed it (CPython layout: ob_sval at the
    # end of the fixed-size header, whose size is that of b"" minus its NUL).
    ctypes.memset(id(data) + sys.getsizeof(b"") - 1, 0, len(data))


# SessionOptions that already carry one sealed model's in-memory weights: reusing one would hand a
# second session the first model's (possibly wiped) buffer under the same name.
_USED_OPTIONS: weakref.WeakSet[ort.SessionOptions] = weakref.WeakSet()


def _check_no_disk_writes(options: ort.SessionOptions, providers: Any, provider_options: Any) -> None:
    if options in _USED_OPTIONS:
        raise ValueError("this SessionOptions already served a sealed model; pass a fresh one per session")
    if options.optimized_model_filepath:
        raise ValueError("optimized_model_filepath would write the decrypted model to disk; it is refused")
    if options.enable_profiling:
        raise ValueError("enable_profiling writes a profile file naming every node; it is refused")
    if _config_entry(options, "ep.context_enable") not in ("", "0"):
        raise ValueError("ep.context_enable writes a compiled model to disk; it is refused")
    groups: list[Mapping[str, Any]] = list(provider_options or [])
    groups += [p[1] for p in providers or [] if isinstance(p, tuple) and len(p) == 2]
    for group in groups:
        for key, value in group.items():
            if _DISK_WRITING_OPTION.search(str(key)) and str(value).lower() not in ("", "0", "false"):
                raise ValueError(f"provider option {key!r} may write derived models or caches to disk; it is refused")


def _config_entry(options: ort.SessionOptions, key: str) -> str:
    try:
        entry: str = options.get_session_config_entry(key)
        return entry
    except RuntimeError:  # onnxruntime raises when the key was never set
        return ""


def _keep_alive(_obj: object) -> None:
    """Finalizer whose only job is to hold its argument until the watched object dies."""


def _model_info_str(model: ModelInfo) -> str:
    return f"{model.name!r} v{model.version}"


class _OrtSession(Protocol):
    """What this module uses of an onnxruntime.InferenceSession (onnxruntime ships no type hints)."""

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any], run_options: Any = None) -> list[Any]: ...
    def get_inputs(self) -> list[Any]: ...
    def get_outputs(self) -> list[Any]: ...
    def get_overridable_initializers(self) -> list[Any]: ...
    def get_modelmeta(self) -> Any: ...
    def get_providers(self) -> list[str]: ...
    def get_provider_options(self) -> dict[str, Any]: ...
    def get_session_options(self) -> Any: ...


class InferenceSession:
    """An onnxruntime InferenceSession over a sealed model, loaded without plaintext on disk.

    ``InferenceSession(path, sess_options=None, providers=None, provider_options=None, *,
    identity=..., trust=..., hygiene="strict")``: the first four arguments are onnxruntime's and
    are passed through (`sess_options` is modified: see below). `identity` is the device key (see
    :func:`~edgeguard.recipients.resolve_identities`; or `passphrase=`), `trust` the publisher
    keys (see :func:`~edgeguard.keys.resolve_trust`).

    hygiene="strict" (default): the weights stay in the locked, non-dumpable secure buffer and
    onnxruntime reads them in place; `sess_options` gets graph optimizations disabled
    (``ORT_DISABLE_ALL``: optimizations that rewrite weights would copy them into onnxruntime's
    heap; optimize offline at seal time instead with ``edgeguard seal --optimize``) and
    prepacking disabled. Inference is slower (no prepacked kernels).
    hygiene="fast": onnxruntime copies the weights and may prepack and optimize them (plain
    onnxruntime speed); the secure buffer is wiped and released as soon as the session exists,
    but the weights then live for the session's life in onnxruntime's ordinary heap.
    hygiene="hardened": for a process that called
    ``edgeguard.harden_process(lock_memory=True, wipe_freed=True)`` (else ValueError): the
    weights are read in place from the secure buffer like in strict mode, but onnxruntime may
    prepack and optimize them (plain onnxruntime speed); those derived copies live in the
    process's heap, which is then locked in RAM, non-dumpable and overwritten when freed.
    In strict and hardened mode every ``run`` zeroes the calling thread's stack below it
    (kernels leave copies of weight panels there), and ``close`` also zeroes the stacks that
    onnxruntime's exited worker threads leave in glibc's cache. See docs/device-guide.md for
    what each mode leaves where.

    `guard`: any object with ``observe(client_id, inputs, outputs) -> decision`` and
    ``apply(decision, outputs) -> outputs`` (edgeguard's extraction detector). When given,
    every :meth:`run` reports its inputs and outputs to it and returns what ``apply`` returns;
    ``apply`` raises (a typed error of the guard's) to block a request.

    `min_coverage` (strict mode only; 0.0 to 1.0, default 1.0): the least share of the model's
    weight bytes (tensors of at least ``EXTERNALIZE_MIN_BYTES``) that must be read in place from
    the secure buffer; ``coverage`` reports the measured :class:`~edgeguard.coverage.Coverage`
    (in both modes).

    `clock` is injectable for tests; `version_store` (a path or VersionStore) turns on
    anti-rollback. `audit` (a path or an :class:`~edgeguard.audit.AuditLog`) records the load or
    its refusal and anti-rollback updates (docs/audit.md); a guard without a log of its own
    records its alerts there too.

    Version 2 artifacts (fleets, docs/device-guide.md): `grant` is the device's grant (a path, bytes,
    or a folder of ``<key_id>.grant`` files of which only the device's own is read; default: the
    grant embedded in the file); `revocation` a signed revocation list (path or bytes) and
    `revocation_store` (a path or RevocationStore) the record of its serials that refuses an older
    list. A revoked grant or device key raises RevokedError.

    Raises:
        FormatError, UnsupportedVersionError: malformed file, or not an ONNX payload.
        UntrustedSignerError: the signer is not in `trust`.
        NotARecipientError: `identity` cannot open the file.
        IntegrityError: the file is not exactly what the publisher signed.
        NotYetValidError, ExpiredError: outside the signed validity window.
        RollbackError: an older version than one already loaded (with `version_store`), or an older
            revocation list than one already seen (RevocationRollbackError).
        RevokedError: the revocation list revokes the grant or the device key.
        CoverageError: strict mode, and less than `min_coverage` of the weights would be read from
            the secure buffer (a file sealed by an older edgeguard: re-seal it).
        KeyFileError: an identity or trust key cannot be loaded (TokenError: a PKCS#11 token).
        ValueError: bad `hygiene` or `min_coverage`, "hardened" in a process not hardened, no identity, empty trust, or options that would write to disk.
        OSError: the file cannot be read.
        onnxruntime's own errors if it rejects the (authentic) model or the options.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sess_options: ort.SessionOptions | None = None,
        providers: Sequence[Any] | None = None,
        provider_options: Sequence[Mapping[str, Any]] | None = None,
        *,
        identity: IdentityLike = None,
        trust: TrustLike = None,
        passphrase: str | bytes | None = None,
        hygiene: str = "strict",
        min_coverage: float = 1.0,
        guard: Any = None,
        version_store: VersionStore | str | os.PathLike[str] | None = None,
        clock: Clock = time.time,
        threads: int = 0,
        grant: Any = None,
        revocation: Any = None,
        revocation_store: Any = None,
        audit: Any = None,
        **kwargs: Any,
    ) -> None:
        if hygiene not in HYGIENE_MODES:
            raise ValueError(f"hygiene must be one of {', '.join(HYGIENE_MODES)}")
        if isinstance(min_coverage, bool) or not isinstance(min_coverage, (int, float)) or not 0.0 <= min_coverage <= 1.0:
            raise ValueError("min_coverage must be a number from 0.0 to 1.0")
        if hygiene == "hardened" and not process_hardening().complete:
            raise ValueError(
                'hygiene="hardened" needs a hardened process: call '
                "edgeguard.harden_process(lock_memory=True, wipe_freed=True) first"
            )
        options = sess_options if sess_options is not None else ort.SessionOptions()
        _check_no_disk_writes(options, providers, provider_options)
        self._guard = guard
        self._ort: _OrtSession | None = None
        self._buffer: SecureBuffer | None = None
        self.hygiene = hygiene
        self._audit = SessionAudit(audit, guard)
        try:
            opened = _open_verified(path, identity, trust, passphrase, clock, self._audit.watch(version_store), threads, grant, revocation, revocation_store)
        except BaseException as exc:
            self._audit.refused(path, exc)
            raise
        buffer = opened.buffer
        try:
            if opened.container.header.payload_kind != "onnx":
                raise FormatError(
                    f"this sealed file holds a {opened.container.header.payload_kind} payload, not an ONNX model; "
                    "use edgeguard.open_sealed"
                )
            self.metadata: ModelInfo = opened.container.header.model
            self.detector_profile = _section_bytes(opened, "detector_profile")
            with opened.layout.section(buffer, "graph") as graph:
                self.coverage: Coverage = graph_coverage(graph)
            self.memory: MemoryReport = dataclasses.replace(memory_report(buffer), coverage=self.coverage)
            if hygiene == "strict" and self.coverage.fraction < min_coverage:
                raise CoverageError(_coverage_message(self.coverage, min_coverage, self.metadata), self.coverage)
            session = self._create(opened, options, providers, provider_options, kwargs)
        except BaseException as exc:
            buffer.close()
            self._audit.refused(path, exc)
            raise
        # onnxruntime keeps raw pointers into the buffer (the session in strict mode, the options'
        # in-memory file table in both modes) but no Python reference: tie the mapping's lifetime
        # to both objects so it is never unmapped under them. A closed buffer holds no RAM.
        session._edgeguard_weights = buffer
        weakref.finalize(options, _keep_alive, buffer)
        if hygiene != "fast":
            self._buffer = buffer
        else:
            buffer.close()  # onnxruntime copied everything it needs during session creation
        self._ort = session
        self._audit.loaded(path, opened, self)

    def _create(
        self, opened: Opened, options: ort.SessionOptions, providers: Any, provider_options: Any, kwargs: dict[str, Any]
    ) -> ort.InferenceSession:
        layout, buffer = opened.layout, opened.buffer
        if self.hygiene == "strict":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            for key, value in _STRICT_CONFIG.items():
                options.add_session_config_entry(key, value)
        elif self.hygiene == "hardened":
            for key, value in _HARDENED_CONFIG.items():
                options.add_session_config_entry(key, value)
        weights = layout.section(buffer, "weights")
        graph = bytes(layout.section(buffer, "graph"))
        try:
            if len(weights):
                options.add_external_initializers_from_files_in_memory([WEIGHTS_LOCATION], [weights], [len(weights)])
                _USED_OPTIONS.add(options)
            return ort.InferenceSession(graph, sess_options=options, providers=providers, provider_options=provider_options, **kwargs)
        finally:
            weights.release()
            _wipe_bytes(graph)

    def _session(self) -> _OrtSession:
        if self._ort is None:
            raise ValueError("the InferenceSession is closed")
        return self._ort

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: ort.RunOptions | None = None,
        *,
        client_id: Any = None,
    ) -> list[Any]:
        """onnxruntime's ``run``; with a guard, its decision is applied to the outputs.

        Raises:
            ValueError: the session is closed.
            whatever onnxruntime raises for bad inputs, and whatever ``guard.apply`` raises to block.
        """
        try:
            outputs = self._session().run(output_names, input_feed, run_options)
        finally:
            if self._buffer is not None:  # strict, hardened: nothing of the weights may stay on this stack
                _core.wipe_stack(STACK_WIPE_BYTES)
        if self._guard is None:
            return outputs
        decision = self._guard.observe(client_id, input_feed, outputs)
        guarded: list[Any] = self._guard.apply(decision, outputs)  # any guard object: see the class doc
        return guarded

    def get_inputs(self) -> list[Any]:
        return self._session().get_inputs()

    def get_outputs(self) -> list[Any]:
        return self._session().get_outputs()

    def get_overridable_initializers(self) -> list[Any]:
        return self._session().get_overridable_initializers()

    def get_modelmeta(self) -> Any:
        return self._session().get_modelmeta()

    def get_providers(self) -> list[str]:
        return self._session().get_providers()

    def get_provider_options(self) -> dict[str, Any]:
        return self._session().get_provider_options()

    def get_session_options(self) -> ort.SessionOptions:
        return self._session().get_session_options()

    @property
    def closed(self) -> bool:
        return self._ort is None

    def close(self) -> None:
        """Releases the onnxruntime session and wipes the weights. Idempotent.

        A ``run`` still in progress in another thread keeps the memory mapped (it reads zeros
        and returns garbage rather than crash); nothing can fault.
        """
        session = self._ort
        buffer, self._ort, self._buffer = self._buffer, None, None
        if buffer is not None:
            buffer.close()
        if session is not None:
            threads = _session_threads(session)
            alive = weakref.ref(session)
            del session  # the last reference, unless the caller kept onnxruntime's session
            if alive() is None:
                _wipe_thread_stacks(threads)
        if hasattr(self, "_audit"):
            self._audit.close()

    def __enter__(self) -> InferenceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("an edgeguard InferenceSession holds decrypted weights and cannot be pickled")

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.hygiene
        return f"edgeguard.InferenceSession({_model_info_str(self.metadata)}, {state})"


def _session_threads(session: _OrtSession) -> int:
    try:
        return int(session.get_session_options().intra_op_num_threads) or (os.cpu_count() or 1)
    except Exception:  # onnxruntime's errors share no base class; never fail a close over this
        return os.cpu_count() or 1


def _wipe_thread_stacks(threads: int) -> None:
    """Zeroes the calling thread's stack below this frame and every thread stack glibc holds in its
    cache: onnxruntime's intra-op threads exit when their session is destroyed, leaving their
    stacks (with the GEMM panels their kernels packed from the weights) to be reused unwiped."""
    _core.wipe_stack(STACK_WIPE_BYTES)
    stack = _core.default_thread_stack_size() or 8 * 1024 * 1024
    count = min(64, max(threads + 1, -(-_GLIBC_STACK_CACHE_BYTES // stack) + 1))
    _core.wipe_cached_thread_stacks(count, STACK_WIPE_BYTES)


def _coverage_message(coverage: Coverage, min_coverage: float, model: ModelInfo) -> str:
    names = ", ".join(coverage.unprotected[:3]) + (f" and {len(coverage.unprotected) - 3} more" if len(coverage.unprotected) > 3 else "")
    return (
        f"strict mode refuses {_model_info_str(model)}: only {coverage.percent:.1f}% of its weight bytes "
        f"({coverage.protected_bytes:,} of {coverage.required_bytes:,}) would be read from the secure buffer, "
        f"min_coverage is {100 * min_coverage:.1f}%; the rest ({names}) would sit in onnxruntime's ordinary heap. "
        "It was probably sealed by an older edgeguard: re-seal the original model with `edgeguard seal`"
    )


def _section_bytes(opened: Opened, name: str) -> bytes | None:
    if name not in opened.layout.sections:
        return None
    return bytes(opened.layout.section(opened.buffer, name))


class SealedTensors:
    """Read-only numpy views of a sealed payload's tensors, backed by the secure buffer.

    ``tensors`` maps names to arrays: every tensor of a safetensors payload (BF16 as uint16),
    ``{"data": uint8 array}`` for a raw payload, the large initializers of an ONNX payload.
    On close() (or leaving the ``with`` block) the buffer is wiped: views kept past that read
    zeros; they can never crash the process.
    """

    def __init__(self, opened: Opened) -> None:
        self.metadata: ModelInfo = opened.container.header.model
        self.kind: str = opened.container.header.payload_kind
        self.memory: MemoryReport = memory_report(opened.buffer)
        self.detector_profile = _section_bytes(opened, "detector_profile")
        self._buffer: SecureBuffer | None = opened.buffer
        self.tensors: dict[str, np.ndarray] = kinds.get(self.kind).tensors(opened.layout, opened.buffer)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def keys(self) -> Iterable[str]:
        return self.tensors.keys()

    @property
    def closed(self) -> bool:
        return self._buffer is None

    def close(self) -> None:
        """Wipes the plaintext. Idempotent."""
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            buffer.close()

    def __enter__(self) -> SealedTensors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("SealedTensors holds decrypted data and cannot be pickled")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.tensors)} tensors"
        return f"SealedTensors({_model_info_str(self.metadata)}, {self.kind}, {state})"


def open_sealed(
    path: str | os.PathLike[str],
    *,
    identity: IdentityLike = None,
    trust: TrustLike = None,
    passphrase: str | bytes | None = None,
    version_store: VersionStore | str | os.PathLike[str] | None = None,
    clock: Clock = time.time,
    threads: int = 0,
    grant: Any = None,
    revocation: Any = None,
    revocation_store: Any = None,
) -> SealedTensors:
    """Verifies and decrypts a sealed safetensors or raw payload (or an ONNX model's weights) into
    secure memory; use as a context manager. `grant`, `revocation` and `revocation_store` are as
    for :class:`InferenceSession`.

    Raises:
        the same errors as :class:`InferenceSession` (except onnxruntime's).
    """
    opened = _open_verified(path, identity, trust, passphrase, clock, version_store, threads, grant, revocation, revocation_store)
    try:
        return SealedTensors(opened)
    except BaseException:
        opened.buffer.close()
        raise
