"""Image <-> camera_info pairing by stamp (ROS-free).

Drivers publish an image and its camera_info with the same stamp on two topics, whose messages
may arrive in either order (each topic in order, the two interleaved arbitrarily). Each image is
paired with the camera_info of its own stamp, as image_transport's camera subscriber does:

- an image whose camera_info is cached is paired at once;
- otherwise it waits (at most ``max_waiting`` images wait, oldest first);
- a camera_info completes the waiting image of its stamp; waiting images older than it can no
  longer get their own (camera_info arrives in stamp order), so they take the newest camera_info,
  counted as a *fallback*; so does an image pushed out of a full waiting queue;
- before any camera_info has arrived only the newest image waits; older ones are returned with
  ``None`` (the caller rejects them as camera_info_missing); the first camera_info of a stream
  releases the waiting image whatever its stamp (counted as a fallback when stamps differ);
- an image older than the newest camera_info takes the newest at once (its own will not come);
- after ``mismatch_limit`` fallback events in a row the stream is treated as one whose stamps
  never match: ``exact`` becomes False and images take the newest camera_info at once, until an
  image finds its own camera_info again.

The surround node pairs after synchronisation, when a set's images have already waited for
their peers (and their camera_info with them): it asks :meth:`InfoPairer.pair_now`, the same
policy without the waiting. Replay (``bag.reader.FrameSync``) and the mono node stream through
:meth:`add_image` / :meth:`add_info`.
"""

from __future__ import annotations

import collections
from typing import Any


class InfoPairer:
    def __init__(self, cache_size: int = 50, max_waiting: int = 3, mismatch_limit: int = 3):
        self._infos: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._size = int(cache_size)
        self._max_waiting = int(max_waiting)
        self._limit = int(mismatch_limit)
        self.exact = True
        self.fallbacks = 0
        self._fallback_run = 0
        self._waiting: collections.deque[tuple[int, Any]] = collections.deque()

    def __len__(self) -> int:
        """camera_info messages cached."""
        return len(self._infos)

    @property
    def waiting(self) -> int:
        """Images waiting for their camera_info."""
        return len(self._waiting)

    def latest(self):
        return next(reversed(self._infos.values())) if self._infos else None

    def add_info(self, t: int, info) -> list[tuple[Any, Any]]:
        """Cache ``info``; return the (image item, info) pairs it completes."""
        first = not self._infos
        self._infos[t] = info
        self._infos.move_to_end(t)
        while len(self._infos) > self._size:
            self._infos.popitem(last=False)
        out = []
        keep = collections.deque()
        fell_back = False
        for wt, item in self._waiting:
            if wt == t:
                self._fallback_run, self.exact = 0, True
                out.append((item, info))
            elif first or wt < t or not self.exact:
                out.append((item, self._fallback(count_run=not fell_back)))
                fell_back = True
            else:
                keep.append((wt, item))
        self._waiting = keep
        return out

    def add_image(self, t: int, item) -> list[tuple[Any, Any]]:
        """Return the pairs this image completes: (item, info); info None = no camera_info yet."""
        info = self._infos.get(t)
        if info is not None:
            self._fallback_run, self.exact = 0, True
            return [(item, info)]
        out = []
        if self._infos and (not self.exact or t < max(self._infos)):
            # camera_info arrives in stamp order: a newer one is here, this image's never will be
            # (and in newest mode nothing waits: older waiting images go first, in stamp order)
            if not self.exact:
                out += self._release_all()
            return out + [(item, self._fallback())]
        if not self._infos:  # nothing to pair with yet: only the newest image waits
            out += [(old, None) for _, old in self._waiting]
            self._waiting.clear()
        self._waiting.append((t, item))
        while len(self._waiting) > self._max_waiting:
            _, old = self._waiting.popleft()
            out.append((old, self._fallback()))
        if not self.exact:  # that overflow switched to newest mode: nothing waits any more
            out += self._release_all()
        return out

    def pair_now(self, t: int):
        """The camera_info for an image of stamp ``t`` that cannot wait any longer: its own, else
        the newest (a fallback), else None (no camera_info yet)."""
        info = self._infos.get(t)
        if info is not None:
            self._fallback_run, self.exact = 0, True
            return info
        return self._fallback()

    def _release_all(self) -> list[tuple[Any, Any]]:
        out = [(item, self._fallback(count_run=False)) for _, item in self._waiting]
        self._waiting.clear()
        return out

    def _fallback(self, count_run: bool = True):
        """The newest camera_info for an image whose own will not come (one event counts once
        towards ``mismatch_limit`` even when it releases several images)."""
        info = self.latest()
        if info is not None:
            self.fallbacks += 1
            self._fallback_run += int(count_run)
            if self._fallback_run >= self._limit:
                self.exact = False
        return info

    def drop_waiting(self) -> list[Any]:
        """Remove and return the waiting image items (camera_info cache kept)."""
        items = [item for _, item in self._waiting]
        self._waiting.clear()
        return items

    def clear(self, keep_stamp: int | None = None) -> list[Any]:
        """Forget every camera_info (but the one stamped ``keep_stamp``: the new epoch's own, when
        a restart shows on the image first); return the waiting image items (dropped)."""
        kept = self._infos.get(keep_stamp) if keep_stamp is not None else None
        self._infos.clear()
        if kept is not None:
            self._infos[keep_stamp] = kept
        self.exact, self._fallback_run = True, 0
        items = [item for _, item in self._waiting]
        self._waiting.clear()
        return items
