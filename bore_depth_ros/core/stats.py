"""Counters and timing statistics shared by the nodes, replay and benchmarks (ROS-free)."""

from __future__ import annotations

import collections
import threading
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
        self._lock = threading.Lock()  # counted on one thread, read by diagnostics on another

    def add(self, reason: str) -> bool:
        """Count one event; return True if the caller should log it now."""
        with self._lock:
            self.counts[reason] += 1
            now = self._clock()
            last = self._last_log.get(reason)
            if last is None or now - last >= self._log_period:
                self._last_log[reason] = now
                return True
            return False

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


class RecentCounts:
    """How much each counter grew within the last ``window`` seconds, so that health levels
    follow what is happening now while the totals keep the history (a transient overload or a
    burst of bad frames clears once it stops). Call :meth:`update` once per report."""

    def __init__(self, window: float, clock=time.monotonic):
        self.window = float(window)
        self._clock = clock
        self._snaps: collections.deque[tuple[float, dict[str, int]]] = collections.deque([(clock(), {})])

    def update(self, totals: dict[str, int]) -> dict[str, int]:
        """Record ``totals`` (name -> running count); return the names that grew in the window
        and by how much."""
        now = self._clock()
        last = self._snaps[-1][1]
        if any(v < last.get(k, 0) for k, v in totals.items()) or last.keys() - totals.keys():
            self._snaps = collections.deque([(now, {})])  # the counters were reset: start over
        self._snaps.append((now, dict(totals)))
        while len(self._snaps) > 1 and self._snaps[1][0] <= now - self.window:
            self._snaps.popleft()
        base = self._snaps[0][1]
        grown = {k: v - base.get(k, 0) for k, v in totals.items()}
        return {k: d for k, d in grown.items() if d > 0}


@dataclass
class RollingStats:
    """Fixed-size window of samples (milliseconds, rates) with cheap percentiles.
    Thread-safe: a worker adds samples while diagnostics read them."""

    size: int = 200
    _values: collections.deque = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(float(value))
            if len(self._values) > self.size:
                self._values.popleft()

    def __len__(self) -> int:
        return len(self._values)

    def mean(self) -> float:
        v = self.values()
        return float(np.mean(v)) if v else float("nan")

    def percentile(self, q: float) -> float:
        v = self.values()
        return float(np.percentile(v, q)) if v else float("nan")

    def last(self) -> float:
        with self._lock:
            return self._values[-1] if self._values else float("nan")

    def values(self) -> list[float]:
        with self._lock:
            return list(self._values)


class RateMeter:
    """Events per second over a sliding window of ``window`` seconds (monotonic clock)."""

    def __init__(self, window: float = 5.0, clock=time.monotonic):
        self.window = float(window)
        self._clock = clock
        self._times: collections.deque = collections.deque()
        self._first: float | None = None
        self.total = 0

    def tick(self) -> None:
        self.total += 1
        now = self._clock()
        if self._first is None:
            self._first = now
        self._times.append(now)
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()

    def rate(self) -> float:
        """Events in the last ``window`` seconds / window, so a stopped stream decays to 0.
        During the first window the rate is taken over the time since the first event."""
        now = self._clock()
        self._prune(now)
        n = len(self._times)
        if n == 0:
            return 0.0
        if now - self._first >= self.window:
            return n / self.window
        span = self._times[-1] - self._times[0]
        return (n - 1) / span if n >= 2 and span > 0 else n / self.window


class SequenceGaps:
    """Messages lost before they reached us, from the publisher's sequence numbers.

    DDS numbers the messages of each writer; a jump of k > 1 means k - 1 messages never arrived
    (best-effort loss or a full reader queue). A number that does not increase means another
    writer or a restarted one: counting starts again from it; so does a jump of a million or
    more (not a plausible loss). Exact for one publisher per topic, a lower bound otherwise.
    """

    def __init__(self):
        self.lost = 0
        self._last: int | None = None

    def add(self, seq: int | None) -> int:
        """Record one received sequence number; return how many were lost just before it."""
        if not seq or seq <= 0:
            return 0
        lost = 0
        if self._last is not None and seq > self._last + 1 and seq - self._last < 1_000_000:
            lost = seq - self._last - 1
            self.lost += lost
        self._last = seq
        return lost
