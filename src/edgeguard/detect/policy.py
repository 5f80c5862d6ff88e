"""Response policies: which action a client's risk earns, and how a degraded answer looks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DetectorArgumentError
from .events import Action


@dataclass(frozen=True)
class Policy:
    """Maps a client's risk to an :class:`Action`. Risk 1.0 is the calibrated alert threshold.

    A level of None disables that action. With ``sticky`` the client's peak risk decides, so a
    thief cannot pause for a window and come back clean. Degrading keeps only the top-1 class
    (``top1_only``), or rounds scores to ``decimals`` and/or adds Gaussian ``noise`` before
    renormalising. Throttling delays each answer by ``delay_s``.

    Raises:
        DetectorArgumentError: levels below 1 or out of order, or a negative noise, delay_s or
            decimals.
    """

    degrade_at: float | None = None
    throttle_at: float | None = None
    block_at: float | None = None
    sticky: bool = True
    top1_only: bool = True
    decimals: int | None = None
    noise: float = 0.0
    delay_s: float = 0.25

    def __post_init__(self) -> None:
        levels = [v for v in (self.degrade_at, self.throttle_at, self.block_at) if v is not None]
        if any(v < 1.0 for v in levels) or levels != sorted(levels):
            raise DetectorArgumentError("action levels must be >= 1 and ordered degrade <= throttle <= block")
        if self.noise < 0 or self.delay_s < 0 or (self.decimals is not None and self.decimals < 0):
            raise DetectorArgumentError("noise, delay_s and decimals must be non-negative")

    @classmethod
    def alert_only(cls) -> Policy:
        """Alert, never touch answers (measurement and shadow deployments)."""
        return cls()

    @classmethod
    def protective(cls) -> Policy:
        """Degrade flagged clients to top-1 labels, throttle at 2x and block at 4x the threshold."""
        return cls(degrade_at=1.0, throttle_at=2.0, block_at=4.0)

    def action(self, risk: float, peak_risk: float) -> Action:
        level = peak_risk if self.sticky else risk
        if self.block_at is not None and level >= self.block_at:
            return Action.BLOCK
        if self.throttle_at is not None and level >= self.throttle_at:
            return Action.THROTTLE
        if self.degrade_at is not None and level >= self.degrade_at:
            return Action.DEGRADE
        return Action.ALERT if level >= 1.0 else Action.ALLOW

    def degrade_scores(self, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A coarsened copy of (rows, classes) class scores that keeps each row's top-1 class."""
        y = np.array(scores, dtype=np.float32, copy=True)
        top = y.argmax(axis=-1)
        if self.top1_only:
            out = np.zeros_like(y)
            np.put_along_axis(out, top[..., None], 1.0, axis=-1)
            return out
        if self.noise > 0:
            y = np.clip(y + rng.normal(0, self.noise, y.shape).astype(np.float32), 0, None)
            np.put_along_axis(y, top[..., None], y.max(axis=-1, keepdims=True) + 1e-6, axis=-1)
            y /= y.sum(axis=-1, keepdims=True)
        if self.decimals is not None:
            y = np.round(y, self.decimals)
            # Rounding can tie or overtake the top class; lift it one step so the label survives.
            lost = y.argmax(axis=-1) != top
            if lost.any():
                lifted = np.round(y.max(axis=-1, keepdims=True) + np.float32(10.0**-self.decimals), self.decimals)
                np.put_along_axis(y, top[..., None], np.where(lost[..., None], lifted,
                                                              np.take_along_axis(y, top[..., None], -1)), axis=-1)
        return y
