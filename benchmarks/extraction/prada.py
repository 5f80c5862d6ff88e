"""PRADA (Juuti et al., EuroS&P 2019), the published baseline, as described in the paper.

Per client: for each predicted class a growing set of kept queries and their minimum L2
distances; every query's distance to its class set joins D; once D holds 100 distances, a
Shapiro-Wilk test every 10 queries alerts when W < delta. Its state grows without bound.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import shapiro


class Prada:
    def __init__(self, delta: float = 0.9, min_distances: int = 100, every: int = 10):
        self.delta, self.min_distances, self.every = delta, min_distances, every
        self.growing: dict[int, list[np.ndarray]] = {}
        self.kept_dists: dict[int, list[float]] = {}
        self.threshold: dict[int, float] = {}
        self.distances: list[float] = []
        self.queries = 0
        self.alerted = False

    def observe(self, x: np.ndarray, label: int) -> bool:
        """Returns True on the query that raises the (first) alert."""
        self.queries += 1
        x = np.asarray(x, np.float64).ravel()
        kept = self.growing.setdefault(label, [])
        if not kept:
            kept.append(x)
            self.kept_dists[label] = []
            self.threshold[label] = 0.0
        else:
            d = float(np.sqrt(((np.asarray(kept) - x) ** 2).sum(axis=1)).min())
            self.distances.append(d)
            if d > self.threshold[label]:
                kept.append(x)
                kd = self.kept_dists[label]
                kd.append(d)
                self.threshold[label] = max(self.threshold[label], float(np.mean(kd) - np.std(kd)))
        if self.alerted or len(self.distances) < self.min_distances or self.queries % self.every:
            return False
        d = np.asarray(self.distances)
        if np.ptp(d) == 0:  # all equal: not normally distributed at all
            w = 0.0
        else:
            w = float(shapiro(d).statistic)
        self.alerted = w < self.delta
        return self.alerted

    def state_bytes(self) -> int:
        vectors = sum(len(v) for v in self.growing.values())
        return 8 * (64 * vectors + len(self.distances) + sum(len(v) for v in self.kept_dists.values()))
