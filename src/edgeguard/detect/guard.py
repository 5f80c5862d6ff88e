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
from .events import SIGNALS, Action, AlertEvent, Decision, fired
from .policy import Policy
from .profile import Profile

_STATE_MAGIC = b"EGDGUARD"
_FLEET_MAGIC = b"EGDFLEET"
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
    first time a client's risk reaches 1 (and once with ``scope="fleet"`` when the fleet view's
    does). ``seed`` fixes the noise a noisy degrade policy adds. ``fleet`` keeps the fleet view: one
    more state, fed by every client's queries, that sees an attack split over many client ids.
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
        fleet: bool = True,
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
        self._native: _core.Detector = _core.Detector(**profile.native_args(max_clients=max_clients, fleet=fleet))
        self._fleet = bool(fleet) and profile.fleet_memory > 0
        self._thresholds = profile.thresholds
        self._fleet_thresholds = profile.fleet_thresholds
        self._shape = profile.input_shape
        self._classes = profile.classes
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
        ``input_name`` entry, or its only entry). Real-valued arrays of any float or integer dtype
        are cast to float32. ``outputs`` is what it returns: an array or a list of arrays (the
        profile's ``output_index`` one holds class scores, of the kind the profile was calibrated
        on: probabilities or logits), or None. Inputs of the wrong shape (or a non-numeric dtype)
        are not refused here: they count as out-of-domain queries.

        Raises:
            DetectorArgumentError: client_id is not a non-empty str of at most
                :data:`MAX_CLIENT_ID_BYTES` bytes of UTF-8 (or has no UTF-8 encoding, like a lone
                surrogate), the feed dict is ambiguous or lacks the profile's input name, or
                outputs have no entry at the profile's output_index, the wrong number of class
                scores, or scores of the other kind (logits where the profile declares
                probabilities, or the reverse).
        """
        _check_client_id(client_id)
        x = self._rows(inputs)
        try:
            if x is None:
                r = self._native.observe_malformed(client_id)
            elif len(x) == 1:
                r = self._native.observe(client_id, x, self._scores(outputs, 1))
            else:
                table = self._native.observe_batch(client_id, x, self._scores(outputs, len(x)))
                return self._decide_batch(client_id, table)
        except ValueError as e:  # class scores of the other kind than the profile's (checked natively)
            if isinstance(e, DetectorArgumentError):
                raise
            raise DetectorArgumentError(str(e)) from None
        risk, peak, queries, first, stats, _event, fleet_risk, fleet_first, fleet_stats = r
        alert = self._alert(client_id, queries, risk, stats) if first else None
        fleet_alert = self._fleet_alert(client_id, fleet_stats) if fleet_first else None
        return self._decision(client_id, risk, peak, queries, stats, alert, fleet_risk, fleet_alert)

    def _decide_batch(self, client_id: str, table: npt.NDArray[np.float32]) -> Decision:
        """Rows of table: the native batch columns (statistics, risk, peak risk, first-alert flag,
        memory event, fleet risk, fleet first-alert flag, fleet statistics), one per query."""
        n = len(SIGNALS)
        last = table[-1]
        queries = int(last[_VOLUME])
        alert = fleet_alert = None
        if table[:, n + 2].any():
            row = int(table[:, n + 2].argmax())
            alert = self._alert(client_id, queries - (len(table) - 1 - row), float(table[row, n]),
                                tuple(float(v) for v in table[row, :n]))
        if table[:, n + 5].any():
            row = int(table[:, n + 5].argmax())
            fleet_alert = self._fleet_alert(client_id, tuple(float(v) for v in table[row, n + 6:]))
        stats = tuple(float(v) for v in last[:n])
        return self._decision(client_id, float(last[n]), float(last[n + 1]), queries, stats, alert,
                              float(last[n + 4]), fleet_alert)

    def _alert(self, client_id: str, query_index: int, risk: float, stats: tuple[float, ...]) -> AlertEvent:
        event = AlertEvent(client_id, query_index, risk, fired(stats, self._thresholds))
        if self.on_alert is not None:
            self.on_alert(event)
        return event

    def _fleet_alert(self, client_id: str, stats: tuple[float, ...]) -> AlertEvent:
        reasons = fired(stats, self._fleet_thresholds)
        risk = max((r.ratio for r in reasons), default=1.0)
        event = AlertEvent(client_id, int(stats[_VOLUME]), risk, reasons, scope="fleet")
        if self.on_alert is not None:
            self.on_alert(event)
        return event

    def _decision(
        self, client_id: str, risk: float, peak: float, queries: int, stats: tuple[float, ...],
        alert: AlertEvent | None, fleet_risk: float = 0.0, fleet_alert: AlertEvent | None = None,
    ) -> Decision:
        action = self.policy.action(risk, peak)
        delay = self.policy.delay_s if action >= Action.THROTTLE else 0.0
        if self.audit is not None:
            self.audit.guard_decision(client_id, action, risk, queries, alert)
            if fleet_alert is not None:  # an attack split over many ids: recorded like a client's alert
                self.audit.guard_decision(client_id, action, fleet_risk, queries, fleet_alert)
        return Decision._new(client_id, action, risk, peak, queries, stats, self._thresholds, alert, delay,
                             fleet_risk, fleet_alert)

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
                raise DetectorArgumentError(
                    f"feed dict has no input {name!r} (the profile's input name); it has {sorted(map(str, inputs))}")
        if not isinstance(inputs, np.ndarray):
            return None
        if inputs.dtype != np.float32:
            if inputs.dtype.kind not in "fiu":
                return None
            inputs = inputs.astype(np.float32)
        shape = inputs.shape
        if shape == self._shape:
            rows = 1
        elif shape[1:] == self._shape and shape[0] > 0:
            rows = shape[0]
        else:
            return None
        return np.ascontiguousarray(inputs).reshape(rows, self.profile.dim)

    def _scores(self, outputs: object, rows: int) -> npt.NDArray[np.float32] | None:
        if outputs is None or self._classes == 0:
            return None
        if isinstance(outputs, Sequence) and not isinstance(outputs, np.ndarray):
            if not -len(outputs) <= self.profile.output_index < len(outputs):
                raise DetectorArgumentError("outputs has no entry at the profile's output_index")
            outputs = outputs[self.profile.output_index]
        y = np.asarray(outputs, dtype=np.float32)
        if y.size != rows * self._classes:
            raise DetectorArgumentError(f"class scores must have {rows} x {self._classes} entries")
        return y.reshape(rows, self._classes)

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

    @property
    def fleet_state_bytes(self) -> int:
        """Bytes of the fleet view's state (fixed; 0 without a fleet view)."""
        return int(self._native.fleet_state_bytes())

    def fleet_snapshot(self) -> bytes:
        """The fleet view's state alone (every client of this model on this device, together),
        bound to the profile, for :meth:`merge_fleet` on another device or an aggregator.

        Raises:
            DetectorError: this guard keeps no fleet view.
        """
        if not self._fleet:
            raise DetectorError("this guard keeps no fleet view (fleet=False)")
        return _FLEET_MAGIC + self._profile_digest + bytes(self._native.save_fleet())

    def merge_fleet(self, *snapshots: bytes | bytearray | memoryview) -> None:
        """Merges other devices' :meth:`fleet_snapshot` into this guard's fleet view.

        Memories are united (a query seen on any device is remembered, so a perturbation step on
        this device of a query sent to another one is found), seen-before filters and coverage are
        united, query counts added, and evidence and peak risk take the larger value. Snapshots are
        checked before anything is merged.

        Raises:
            DetectorError: this guard keeps no fleet view, or a snapshot is malformed or was made
                under another profile (nothing is merged then).
        """
        if not self._fleet:
            raise DetectorError("this guard keeps no fleet view (fleet=False)")
        blobs = [self._unwrap(bytes(b), _FLEET_MAGIC, "fleet") for b in snapshots]
        probe = _core.Detector(**self.profile.native_args(max_clients=1))
        for blob in blobs:  # validate all first: a bad one must not leave a half merge
            try:
                probe.merge_fleet(blob)
            except ValueError as e:
                raise DetectorError(f"fleet state rejected: {e}") from None
        for blob in blobs:
            self._native.merge_fleet(blob)

    def _unwrap(self, blob: bytes, magic: bytes, what: str) -> bytes:
        head = len(magic) + len(self._profile_digest)
        if not blob.startswith(magic):
            raise DetectorError(f"not a guard {what} snapshot")
        if blob[len(magic) : head] != self._profile_digest:
            raise DetectorError(f"guard {what} state was saved under a different profile")
        return blob[head:]

    def save_state(self) -> bytes:
        """A snapshot of every client's state, bound to this guard's profile."""
        return _STATE_MAGIC + self._profile_digest + bytes(self._native.save())

    def restore_state(self, blob: bytes | bytearray | memoryview) -> None:
        """Replaces all client state with a :meth:`save_state` snapshot.

        Raises:
            DetectorError: the snapshot is malformed, was made under another profile, or holds
                more clients than max_clients. The current state is then kept.
        """
        blob = self._unwrap(bytes(blob), _STATE_MAGIC, "state")
        try:
            self._native.restore(blob)
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
