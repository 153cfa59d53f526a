"""Approximate-time synchroniser for N streams (ROS-free, deterministic, every drop counted).

Used by the surround node (one stream per camera image) and by bag replay, so live and offline
runs group frames identically for the same arrival order.

Policy. Each stream keeps a queue of at most ``queue_size`` messages sorted by stamp. When a
message arrives, the synchroniser looks, in every other stream, for the message closest in time
to it; if every stream has one and the spread of the group (newest minus oldest stamp) is at most
``slop``, the group is emitted. Emitted messages leave their queues; messages older than the
group's newest stamp can never join a later group (groups are emitted in time order), so they
are dropped as ``unmatched``. Drop reasons:

- ``queue_overflow``: a stream's queue was full; its oldest message was dropped;
- ``unmatched``: superseded by a newer complete group (a peer camera missed that frame);
- ``late``: arrived with a stamp not newer than the last emitted group (too late to be grouped);
- ``duplicate``: a second message with the same stamp on the same stream (the newer replaces it);
- ``reset``: discarded when a stream's stamps jumped backwards by more than ``reset_threshold``
  (a bag restarted); the synchroniser starts over and reports the reset;
- ``end_of_input``: still waiting for peers when the input ended (``flush``);
- any reason given to :meth:`ApproximateSynchronizer.set_absent` (e.g. ``camera_silent``,
  ``clock_offset``): frames of a stream that is left out of the sets.

Degraded sets. ``set_absent`` leaves streams out (a camera that went silent, one whose clock is
off): groups are then formed from the other streams, with ``None`` in the absent streams' places,
and a stream that is no longer absent rejoins with its next message.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .stats import ReasonCounter

QUEUE_OVERFLOW = "queue_overflow"
UNMATCHED = "unmatched"
LATE = "late"
DUPLICATE = "duplicate"
RESET = "reset"
END_OF_INPUT = "end_of_input"


@dataclass
class SyncGroup:
    """One message per stream, in stream order; ``None`` for streams left out (absent)."""

    stamps: list[int | None]
    items: list[Any]

    @property
    def present(self) -> list[int]:
        """Indices of the streams in this group."""
        return [i for i, t in enumerate(self.stamps) if t is not None]

    @property
    def complete(self) -> bool:
        return all(t is not None for t in self.stamps)

    @property
    def newest(self) -> int:
        return max(t for t in self.stamps if t is not None)

    @property
    def spread(self) -> int:
        present = [t for t in self.stamps if t is not None]
        return max(present) - min(present)


@dataclass
class SyncEvent:
    """What one ``add`` call did: completed groups, drops (stream, stamp, reason), a reset."""

    groups: list[SyncGroup] = field(default_factory=list)
    drops: list[tuple[int, int, str]] = field(default_factory=list)
    reset: bool = False


class ApproximateSynchronizer:
    def __init__(
        self, n_streams: int, slop_ns: int, queue_size: int = 10, reset_threshold_ns: int = 1_000_000_000
    ):
        if n_streams < 1:
            raise ValueError("n_streams must be >= 1")
        if slop_ns < 0 or queue_size < 1:
            raise ValueError("slop must be >= 0 and queue_size >= 1")
        self.n = n_streams
        self.slop = int(slop_ns)
        self.queue_size = int(queue_size)
        self.reset_threshold = int(reset_threshold_ns)
        self.drops = ReasonCounter()
        self.groups_emitted = 0
        self.resets = 0
        self._stamps: list[list[int]] = [[] for _ in range(n_streams)]
        self._items: list[list[Any]] = [[] for _ in range(n_streams)]
        self._last_emitted: int | None = None
        self._newest: list[int | None] = [None] * n_streams  # per stream, for restart detection
        self.absent: dict[int, str] = {}

    def pending(self) -> list[int]:
        """Queue length per stream."""
        return [len(s) for s in self._stamps]

    def _drop(self, ev: SyncEvent, stream: int, stamp: int, reason: str) -> None:
        self.drops.add(reason)
        ev.drops.append((stream, stamp, reason))

    def reset(self, ev: SyncEvent | None = None) -> None:
        ev = ev if ev is not None else SyncEvent()
        for s in range(self.n):
            for t in self._stamps[s]:
                self._drop(ev, s, t, RESET)
            self._stamps[s].clear()
            self._items[s].clear()
        self._last_emitted = None
        self._newest = [None] * self.n
        self.resets += 1
        ev.reset = True

    def flush(self) -> SyncEvent:
        """Drop (and report) everything still queued: the input has ended."""
        ev = SyncEvent()
        for s in range(self.n):
            for t in self._stamps[s]:
                self._drop(ev, s, t, END_OF_INPUT)
            self._stamps[s].clear()
            self._items[s].clear()
        return ev

    def set_absent(self, absent: Mapping[int, str]) -> SyncEvent:
        """Leave the streams in ``absent`` (stream -> reason) out of the sets until they are no
        longer in it. Their queued messages and any that arrive while they are out are dropped
        under that reason."""
        ev = SyncEvent()
        for s, reason in absent.items():
            if s in self.absent:
                continue
            for t in self._stamps[s]:
                self._drop(ev, s, t, reason)
            self._stamps[s].clear()
            self._items[s].clear()
        self.absent = dict(absent)
        return ev

    def add(self, stream: int, stamp_ns: int, item: Any) -> SyncEvent:
        if not 0 <= stream < self.n:
            raise IndexError(f"stream {stream} out of range (0..{self.n - 1})")
        ev = SyncEvent()
        t = int(stamp_ns)
        if stream in self.absent:
            self._drop(ev, stream, t, self.absent[stream])
            return ev
        newest = self._newest[stream]
        if newest is not None and t < newest - self.reset_threshold:
            self.reset(ev)
        self._newest[stream] = t if self._newest[stream] is None else max(self._newest[stream], t)
        if self._last_emitted is not None and t <= self._last_emitted:
            self._drop(ev, stream, t, LATE)
            return ev
        stamps, items = self._stamps[stream], self._items[stream]
        i = bisect.bisect_left(stamps, t)
        if i < len(stamps) and stamps[i] == t:
            self._drop(ev, stream, t, DUPLICATE)
            items[i] = item
        else:
            stamps.insert(i, t)
            items.insert(i, item)
            if len(stamps) > self.queue_size:
                self._drop(ev, stream, stamps.pop(0), QUEUE_OVERFLOW)
                items.pop(0)
        group = self._match(stream, t)
        if group is not None:
            self._emit(group, ev)
        return ev

    def _match(self, stream: int, t: int) -> list[int | None] | None:
        """Index per stream of the closest message to ``t`` if they form a group within slop
        (None for absent streams)."""
        chosen: list[int | None] = []
        for s in range(self.n):
            if s in self.absent:
                chosen.append(None)
                continue
            stamps = self._stamps[s]
            if not stamps:
                return None
            if s == stream:
                chosen.append(bisect.bisect_left(stamps, t))
                continue
            j = bisect.bisect_left(stamps, t)
            cands = [k for k in (j - 1, j) if 0 <= k < len(stamps)]
            chosen.append(min(cands, key=lambda k: (abs(stamps[k] - t), stamps[k])))
        picked = [self._stamps[s][k] for s, k in enumerate(chosen) if k is not None]
        return chosen if max(picked) - min(picked) <= self.slop else None

    def _emit(self, chosen: list[int | None], ev: SyncEvent) -> None:
        stamps = [None if k is None else self._stamps[s][k] for s, k in enumerate(chosen)]
        items = [None if k is None else self._items[s][k] for s, k in enumerate(chosen)]
        newest = max(t for t in stamps if t is not None)
        for s, k in enumerate(chosen):
            if k is not None:
                del self._stamps[s][k]
                del self._items[s][k]
            # anything not newer than the emitted group can never be grouped any more
            while self._stamps[s] and self._stamps[s][0] <= newest:
                self._drop(ev, s, self._stamps[s].pop(0), UNMATCHED)
                self._items[s].pop(0)
        self._last_emitted = newest
        self.groups_emitted += 1
        ev.groups.append(SyncGroup(stamps, items))
