"""The guard: runs beside a model, observes each client's queries and answers, applies the policy."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from .. import _core
from ..audit.hooks import guard_audit as _audit_log
from ..errors import DetectorArgumentError, DetectorError, QueryBlockedError
from .events import SIGNALS, Action, AlertEvent, Decision, reasons_from
from .policy import Policy
from .profile import Profile

_STATE_MAGIC = b"EGDGUARD"
# Longest client id, in bytes of UTF-8: what a state snapshot can hold (csrc/detector.cpp,
# kMaxClientIdLen). Counting characters instead let one long non-ASCII id make save_state()
# unrestorable, losing every client's state on restart.
MAX_CLIENT_ID_BYTES = 1024
_VOLUME = SIGNALS.index("volume")  # the volume statistic is the client's query count


class Guard:
    """Per-client extraction detection for one model, in bounded memory.

    ``max_clients`` bounds how many clients are tracked (each holds
    :attr:`state_bytes_per_client`); the least recently seen is forgotten first, so memory stays
    fixed however many client ids appear. ``on_alert`` is called with an :class:`AlertEvent` the
    first time a client's risk reaches 1. ``seed`` fixes the noise a noisy degrade policy adds.
    ``audit`` (an :class:`~edgeguard.audit.AuditLog` or a path) records every alert with its
    signals, ATLAS ids and action (docs/audit.md).
    Thread-safe.

    Raises:
        DetectorArgumentError: profile is not a :class:`Profile`, policy not a :class:`Policy`,
            or max_clients is not a positive int.
    """

    def __init__(
        self,
        profile: Profile,
        policy: Policy | None = None,
        *,
        max_clients: int = 1024,
        on_alert: Callable[[AlertEvent], None] | None = None,
        seed: int | None = None,
        audit: Any = None,
    ) -> None:
        if not isinstance(profile, Profile):
            raise DetectorArgumentError("profile must be an edgeguard Profile")
        policy = Policy() if policy is None else policy
        if not isinstance(policy, Policy):
            raise DetectorArgumentError("policy must be an edgeguard Policy")
        if not isinstance(max_clients, int) or max_clients < 1:
            raise DetectorArgumentError("max_clients must be a positive integer")
        self.profile = profile
        self.policy = policy
        self.on_alert = on_alert
        self.audit = _audit_log(audit)  # alerts (and, if enabled, every decision) go to this AuditLog
        # The _core stub does not declare the detector bindings yet (csrc/detector_bindings.cpp).
        self._native: Any = _core.Detector(**profile.native_args(max_clients=max_clients))  # type: ignore[attr-defined]
        self._thresholds = profile.thresholds
        self._shape = profile.input_shape
        self._profile_digest = hashlib.sha256(profile.to_bytes()).digest()
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    # ------------------------------------------------------------------ observe

    def observe(
        self,
        client_id: str,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        outputs: np.ndarray | Sequence[np.ndarray] | None = None,
    ) -> Decision:
        """Records one request (one or more rows) from ``client_id`` and decides on its answer.

        ``inputs`` is what onnxruntime takes: an array, or a feed dict (the profile's
        ``input_name`` entry, or its only entry). ``outputs`` is what it returns: an array or a
        list of arrays (the profile's ``output_index`` one holds class scores), or None. Inputs of
        the wrong shape or dtype are not refused here: they count as out-of-domain queries.

        Raises:
            DetectorArgumentError: client_id is not a non-empty str of at most
                :data:`MAX_CLIENT_ID_BYTES` bytes of UTF-8 (or has no UTF-8 encoding, like a lone
                surrogate), the feed dict is ambiguous, or outputs have no entry at the profile's
                output_index or the wrong number of class scores.
        """
        _check_client_id(client_id)
        x = self._rows(inputs)
        if x is None:
            risk, peak, queries, first, stats = self._native.observe_malformed(client_id)
        elif len(x) == 1:
            risk, peak, queries, first, stats = self._native.observe(client_id, x, self._scores(outputs, 1))
        else:
            table = self._native.observe_batch(client_id, x, self._scores(outputs, len(x)))
            return self._decide_batch(client_id, table)
        alert = self._alert(client_id, queries, risk, stats) if first else None
        return self._decision(client_id, risk, peak, queries, stats, alert)

    def _decide_batch(self, client_id: str, table: npt.NDArray[np.float32]) -> Decision:
        """Rows of table: the 7 statistics, risk, peak risk, first-alert flag (one per query)."""
        last = table[-1]
        queries = int(last[_VOLUME])
        alert = None
        if table[:, -1].any():
            row = int(table[:, -1].argmax())
            alert = self._alert(client_id, queries - (len(table) - 1 - row), float(table[row, -3]),
                                tuple(float(v) for v in table[row, :-3]))
        stats = tuple(float(v) for v in last[:-3])
        return self._decision(client_id, float(last[-3]), float(last[-2]), queries, stats, alert)

    def _alert(self, client_id: str, query_index: int, risk: float, stats: tuple[float, ...]) -> AlertEvent:
        event = AlertEvent(client_id, query_index, risk, reasons_from(stats, self._thresholds))
        if self.on_alert is not None:
            self.on_alert(event)
        return event

    def _decision(
        self, client_id: str, risk: float, peak: float, queries: int, stats: tuple[float, ...], alert: AlertEvent | None
    ) -> Decision:
        action = self.policy.action(risk, peak)
        delay = self.policy.delay_s if action >= Action.THROTTLE else 0.0
        if self.audit is not None:
            self.audit.guard_decision(client_id, action, risk, queries, alert)
        return Decision._new(client_id, action, risk, peak, queries, stats, self._thresholds, alert, delay)

    def _rows(self, inputs: object) -> npt.NDArray[np.float32] | None:
        """The request as contiguous float32 rows, or None if it does not fit the profile."""
        if isinstance(inputs, Mapping):
            name = self.profile.input_name
            if name is None:
                if len(inputs) != 1:
                    raise DetectorArgumentError("feed dict has several inputs and the profile names none")
                (inputs,) = inputs.values()
            elif name in inputs:
                inputs = inputs[name]
            else:
                return None
        if not isinstance(inputs, np.ndarray) or inputs.dtype != np.float32:
            return None
        shape = inputs.shape
        if shape == self._shape:
            rows = 1
        elif shape[1:] == self._shape and shape[0] > 0:
            rows = shape[0]
        else:
            return None
        return np.ascontiguousarray(inputs).reshape(rows, self.profile.dim)

    def _scores(self, outputs: object, rows: int) -> npt.NDArray[np.float32] | None:
        if outputs is None or self.profile.classes == 0:
            return None
        if isinstance(outputs, Sequence) and not isinstance(outputs, np.ndarray):
            if not -len(outputs) <= self.profile.output_index < len(outputs):
                raise DetectorArgumentError("outputs has no entry at the profile's output_index")
            outputs = outputs[self.profile.output_index]
        y = np.asarray(outputs, dtype=np.float32)
        if y.size != rows * self.profile.classes:
            raise DetectorArgumentError(f"class scores must have {rows} x {self.profile.classes} entries")
        return y.reshape(rows, self.profile.classes)

    # -------------------------------------------------------------------- apply

    @overload
    def apply(self, decision: Decision, outputs: np.ndarray, *, sleep: bool = True) -> np.ndarray: ...
    @overload
    def apply(self, decision: Decision, outputs: Sequence[np.ndarray], *, sleep: bool = True) -> Sequence[np.ndarray]: ...
    @overload
    def apply(self, decision: Decision, outputs: None, *, sleep: bool = True) -> None: ...

    def apply(
        self, decision: Decision, outputs: np.ndarray | Sequence[np.ndarray] | None, *, sleep: bool = True
    ) -> np.ndarray | Sequence[np.ndarray] | None:
        """Returns ``outputs`` as the decision allows: unchanged, degraded, or delayed and degraded.

        ``outputs`` has the same form as for :meth:`observe`; a list stays a list, with only the
        class-score entry replaced. With ``sleep=False`` a throttled answer is not delayed here and
        the caller must honour ``decision.delay_s`` itself.

        Raises:
            QueryBlockedError: the decision is BLOCK.
            DetectorArgumentError: decision is not a :class:`Decision`, or the decision degrades
                and outputs hold no class-score array.
        """
        if not isinstance(decision, Decision):
            raise DetectorArgumentError("decision must come from Guard.observe")
        if decision.action == Action.BLOCK:
            raise QueryBlockedError(f"client {decision.client_id!r} is blocked by the extraction policy")
        if decision.action < Action.DEGRADE:
            return outputs
        if decision.delay_s > 0 and sleep:
            time.sleep(decision.delay_s)
        if isinstance(outputs, np.ndarray):
            return self._degrade(outputs)
        index = self.profile.output_index
        if isinstance(outputs, Sequence) and -len(outputs) <= index < len(outputs):
            out = list(outputs)
            out[index] = self._degrade(out[index])
            return out
        raise DetectorArgumentError("outputs hold no class-score array to degrade")

    def _degrade(self, scores: object) -> np.ndarray:
        if not isinstance(scores, np.ndarray) or scores.ndim == 0:
            raise DetectorArgumentError("outputs hold no class-score array to degrade")
        with self._rng_lock:
            return self.policy.degrade_scores(scores, self._rng).astype(scores.dtype, copy=False)

    # -------------------------------------------------------- clients and state

    def forget(self, client_id: str) -> None:
        """Drops everything known about ``client_id`` (an operator's pardon)."""
        self._native.forget(client_id)

    def tracked(self, client_id: str) -> bool:
        """Whether ``client_id`` currently has state."""
        return bool(self._native.known(client_id))

    @property
    def clients(self) -> int:
        """How many clients currently have state."""
        return int(self._native.clients())

    @property
    def evictions(self) -> int:
        """How many clients were forgotten to keep within max_clients."""
        return int(self._native.evictions())

    @property
    def state_bytes_per_client(self) -> int:
        """Bytes of detector state each tracked client holds (fixed, whatever it sends)."""
        return int(self._native.state_bytes_per_client())

    def save_state(self) -> bytes:
        """A snapshot of every client's state, bound to this guard's profile."""
        return _STATE_MAGIC + self._profile_digest + bytes(self._native.save())

    def restore_state(self, blob: bytes | bytearray | memoryview) -> None:
        """Replaces all client state with a :meth:`save_state` snapshot.

        Raises:
            DetectorError: the snapshot is malformed, was made under another profile, or holds
                more clients than max_clients. The current state is then kept.
        """
        blob = bytes(blob)
        head = len(_STATE_MAGIC) + len(self._profile_digest)
        if not blob.startswith(_STATE_MAGIC):
            raise DetectorError("not a guard state snapshot")
        if blob[len(_STATE_MAGIC) : head] != self._profile_digest:
            raise DetectorError("guard state was saved under a different profile")
        try:
            self._native.restore(blob[head:])
        except ValueError as e:
            raise DetectorError(f"guard state rejected: {e}") from None


def _check_client_id(client_id: object) -> None:
    """Refuses what a snapshot could not restore: the native core stores ids as UTF-8 bytes."""
    if type(client_id) is str:
        try:
            size = len(client_id.encode("utf-8"))
        except UnicodeEncodeError:
            size = 0
        if 0 < size <= MAX_CLIENT_ID_BYTES:
            return
    raise DetectorArgumentError(
        f"client_id must be a non-empty str of at most {MAX_CLIENT_ID_BYTES} bytes of UTF-8")
