"""What the guard tells its caller: per-query decisions, the reasons behind them, alert events."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from .._core import SIGNALS as SIGNALS  # the native layout order, from csrc/detector.h's kSignalNames

# MITRE ATLAS techniques an extraction alert is evidence of.
ATLAS_EXTRACT_MODEL = "AML.T0024.002"  # Exfiltration via AI Inference API: Extract AI Model
ATLAS_INFERENCE_API_ACCESS = "AML.T0040"  # AI Model Inference API Access
ATLAS_TECHNIQUES = (ATLAS_EXTRACT_MODEL, ATLAS_INFERENCE_API_ACCESS)


_DESCRIPTIONS = {
    "invalid": "queries outside the model's declared input domain",
    "novelty": "inputs unlike the benign reference profile, sustained over many queries",
    "chain": "small-perturbation chains: queries that are perturbation steps from earlier ones in the session",
    "low_margin": "many answers close to a decision boundary",
    "coverage": "input-space coverage beyond any calibrated benign client",
    "volume": "query volume beyond the configured budget",
    "combined": "several signals elevated at once",
}


class Action(enum.IntEnum):
    """What to do with an answer, mildest first; each action includes the milder ones."""

    ALLOW = 0
    ALERT = 1  # answer unchanged, the client is flagged
    DEGRADE = 2  # answer coarsened (top-1 only, rounding or noise)
    THROTTLE = 3  # degraded and delayed
    BLOCK = 4  # no answer


@dataclass(frozen=True)
class Reason:
    """One signal's contribution: its statistic, its calibrated threshold, and their ratio."""

    signal: str
    value: float
    threshold: float

    @property
    def ratio(self) -> float:
        return self.value / self.threshold

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.signal]


class ReasonDict(TypedDict):
    """One entry of :meth:`AlertEvent.to_dict`'s ``reasons``."""

    signal: str
    value: float
    threshold: float
    description: str


class AlertDict(TypedDict):
    """The JSON-ready form of an :class:`AlertEvent` (:meth:`AlertEvent.to_dict`)."""

    event: str
    scope: str
    client_id: str
    query_index: int
    risk: float
    reasons: list[ReasonDict]
    mitre_atlas: list[str]
    timestamp: float


@dataclass(frozen=True)
class AlertEvent:
    """Raised once per client, on the query whose risk first reaches 1 (a calibrated threshold),
    and once per guard for the fleet view (``scope == "fleet"``: every client of the model taken
    together; ``client_id`` is then the client whose query tipped it, ``query_index`` the fleet's
    query count). ``reasons`` are the signals that fired (ratio >= 1), strongest first."""

    client_id: str
    query_index: int
    risk: float
    reasons: tuple[Reason, ...]
    techniques: tuple[str, ...] = ATLAS_TECHNIQUES
    timestamp: float = field(default_factory=time.time)
    scope: str = "client"

    def to_dict(self) -> AlertDict:
        """A JSON-ready structured event for logs and SIEMs."""
        reasons: list[ReasonDict] = [
            {"signal": r.signal, "value": round(r.value, 4), "threshold": round(r.threshold, 4),
             "description": r.description}
            for r in self.reasons
        ]
        return {
            "event": "edgeguard.extraction_alert",
            "scope": self.scope,
            "client_id": self.client_id,
            "query_index": self.query_index,
            "risk": round(self.risk, 4),
            "reasons": reasons,
            "mitre_atlas": list(self.techniques),
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True)
class Decision:
    """The guard's verdict on one observed request (made by :meth:`Guard.observe`).

    ``risk`` is the client's current largest signal/threshold ratio (1.0 = a calibrated alert
    threshold), ``peak_risk`` the highest it has been, ``queries`` how many queries the client has
    sent, ``alert`` the event raised by this request (else None), ``delay_s`` how long a throttled
    answer is held back. ``reasons`` lists the signals at or above half their threshold, strongest
    first. ``stats`` and ``thresholds`` are the per-signal statistics and the profile's thresholds
    (in :data:`SIGNALS` order) the reasons are drawn from.
    """

    client_id: str
    action: Action
    risk: float
    peak_risk: float
    queries: int
    stats: tuple[float, ...] = field(repr=False)
    thresholds: tuple[float, ...] = field(repr=False)
    alert: AlertEvent | None = None
    delay_s: float = 0.0
    fleet_risk: float = 0.0
    fleet_alert: AlertEvent | None = None

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return reasons_from(self.stats, self.thresholds)

    @classmethod
    def _new(
        cls,
        client_id: str,
        action: Action,
        risk: float,
        peak_risk: float,
        queries: int,
        stats: tuple[float, ...],
        thresholds: tuple[float, ...],
        alert: AlertEvent | None,
        delay_s: float,
        fleet_risk: float = 0.0,
        fleet_alert: AlertEvent | None = None,
    ) -> Decision:
        """The guard's constructor on the hot path: the same fields as ``__init__``, set without
        the frozen dataclass's per-field ``object.__setattr__`` (which costs about 1 us per query)."""
        d = object.__new__(cls)
        d.__dict__.update(client_id=client_id, action=action, risk=risk, peak_risk=peak_risk, queries=queries,
                          stats=stats, thresholds=thresholds, alert=alert, delay_s=delay_s,
                          fleet_risk=fleet_risk, fleet_alert=fleet_alert)
        return d


def fired(stats: Sequence[float], thresholds: Sequence[float]) -> tuple[Reason, ...]:
    """The signals at or above their threshold, strongest first: why an alert was raised."""
    return reasons_from(stats, thresholds, floor=1.0)


def reasons_from(stats: Sequence[float], thresholds: Sequence[float], floor: float = 0.5) -> tuple[Reason, ...]:
    """Signals whose statistic is at least ``floor`` of its threshold, strongest first."""
    found = [Reason(SIGNALS[j], float(v), float(t)) for j, (v, t) in enumerate(zip(stats, thresholds, strict=True))
             if v / t >= floor]
    return tuple(sorted(found, key=lambda r: -r.ratio))
