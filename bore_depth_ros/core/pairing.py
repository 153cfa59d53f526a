"""Image <-> camera_info pairing by stamp (ROS-free).

Drivers publish an image and its camera_info with the same stamp, on two topics whose messages
arrive in either order. Each image is paired with the camera_info of its own stamp (as
image_transport's camera subscriber does); an image whose camera_info has not arrived yet waits,
one at a time. When it cannot arrive any more (a newer camera_info came, or the next image did),
the newest camera_info is used instead and the pairing is counted as a fallback (so is an
image released by the first camera_info of a stream, whatever its stamp). After
``mismatch_limit`` fallbacks in a row the stream is treated as one whose stamps never match and
images are paired with the newest camera_info at once (``exact`` becomes False).
"""
from __future__ import annotations

import collections
from typing import Any


class InfoPairer:
    def __init__(self, cache_size: int = 50, mismatch_limit: int = 3):
        self._infos: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._size = int(cache_size)
        self._limit = int(mismatch_limit)
        self.exact = True
        self.fallbacks = 0
        self._fallback_run = 0
        self.waiting: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return len(self._infos)

    def latest(self):
        return next(reversed(self._infos.values())) if self._infos else None

    def _newest_stamp(self) -> int | None:
        return max(self._infos) if self._infos else None

    def add_info(self, t: int, info) -> list[tuple[Any, Any]]:
        """Cache ``info``; return the (image item, info) pairs it completes.

        A waiting image is completed by the camera_info of its stamp; by a newer one (its own can
        no longer come), counted as a fallback; or by the very first camera_info of the stream.
        """
        first = not self._infos
        self._infos[t] = info
        self._infos.move_to_end(t)
        while len(self._infos) > self._size:
            self._infos.popitem(last=False)
        if self.waiting is None:
            return []
        wt, item = self.waiting
        if wt == t:
            self.waiting, self._fallback_run = None, 0
            return [(item, info)]
        if first or t > wt or not self.exact:
            self.waiting = None
            return [(item, self._fallback())]
        return []

    def add_image(self, t: int, item) -> list[tuple[Any, Any]]:
        """Return the pairs this image completes: (item, info), info None = no camera_info at all."""
        out = []
        info = self._infos.get(t)
        if info is not None:
            self._fallback_run = 0
        elif self._infos and (not self.exact or self._newest_stamp() > t):
            info = self._fallback()
        if info is not None:
            out.append((item, info))
            return out
        if self.waiting is not None:
            _, old = self.waiting
            out.append((old, self._fallback()))
        self.waiting = (t, item)
        return out

    def _fallback(self):
        info = self.latest()
        if info is not None:
            self.fallbacks += 1
            self._fallback_run += 1
            if self._fallback_run >= self._limit:
                self.exact = False
        return info

    def clear(self) -> Any:
        """Forget every camera_info; return the waiting image item (dropped), if any."""
        self._infos.clear()
        self.exact, self._fallback_run = True, 0
        waiting, self.waiting = self.waiting, None
        return None if waiting is None else waiting[1]
