"""Counters and timing statistics shared by the nodes, replay and benchmarks (ROS-free)."""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np


class ReasonCounter:
    """Counts events (rejected inputs, dropped frames) by reason and decides when to log them.

    Logging policy: the first occurrence of every reason is logged, then at most one line per
    reason every ``log_period`` seconds, carrying the running count, so floods never hide causes.
    """

    def __init__(self, log_period: float = 5.0, clock=time.monotonic):
        self.counts: collections.Counter[str] = collections.Counter()
        self._last_log: dict[str, float] = {}
        self._log_period = log_period
        self._clock = clock

    def add(self, reason: str) -> bool:
        """Count one event; return True if the caller should log it now."""
        self.counts[reason] += 1
        now = self._clock()
        last = self._last_log.get(reason)
        if last is None or now - last >= self._log_period:
            self._last_log[reason] = now
            return True
        return False

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


@dataclass
class RollingStats:
    """Fixed-size window of samples (milliseconds, rates) with cheap percentiles."""

    size: int = 200
    _values: collections.deque = field(default_factory=collections.deque)

    def add(self, value: float) -> None:
        self._values.append(float(value))
        if len(self._values) > self.size:
            self._values.popleft()

    def __len__(self) -> int:
        return len(self._values)

    def mean(self) -> float:
        return float(np.mean(self._values)) if self._values else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self._values, q)) if self._values else float("nan")

    def last(self) -> float:
        return self._values[-1] if self._values else float("nan")

    def values(self) -> list[float]:
        return list(self._values)
