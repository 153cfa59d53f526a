"""A ROS-free transform buffer: a tree of static and time-stamped transforms with tf2-style lookups.

Frames form a tree (each child has one parent, the latest one set). ``lookup(target, source, t_ns)``
returns the :class:`Transform` that maps points from ``source`` into ``target`` at time ``t_ns``
(tf2's ``lookup_transform(target, source, time)``); ``t_ns = 0`` means the latest common time of the
chain. Dynamic edges are interpolated between their neighbouring stamps (linear translation,
slerp rotation) and never extrapolated beyond ``max_extrapolation_ns``. Thread-safe.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from .errors import ReasonError
from .transforms import Transform, quat_to_matrix

UNKNOWN_FRAME = "tf_unknown_frame"
NOT_CONNECTED = "tf_not_connected"
EXTRAPOLATION = "tf_extrapolation"
TF_REASONS = (UNKNOWN_FRAME, NOT_CONNECTED, EXTRAPOLATION)


class TfLookupError(ReasonError, LookupError):
    """A transform could not be looked up; ``reason`` is one of :data:`TF_REASONS`."""


def _norm_frame(frame: str) -> str:
    # tf2 rejects a leading slash, but older bags carry them; "/odom" and "odom" are one frame.
    return frame[1:] if frame.startswith("/") else frame


def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (x, y, z, w) along the shorter arc."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp is exact to float precision
        q = q0 + a * (q1 - q0)
    else:
        theta = np.arccos(dot)
        q = (np.sin((1.0 - a) * theta) * q0 + np.sin(a * theta) * q1) / np.sin(theta)
    return q / np.linalg.norm(q)


@dataclass
class _Edge:
    parent: str
    static: bool
    times: list[int] = field(default_factory=list)
    trans: list[np.ndarray] = field(default_factory=list)
    quats: list[np.ndarray] = field(default_factory=list)


class TfBuffer:
    """Static and dynamic transforms with chained, interpolated lookups.

    ``cache_time_ns``: dynamic samples older than the newest one of their edge by more than this
    are forgotten (None keeps everything). ``max_extrapolation_ns``: how far outside the stored
    stamps a dynamic edge may be queried (its first/last sample is then used as is).
    """

    def __init__(self, cache_time_ns: int | None = 30_000_000_000, max_extrapolation_ns: int = 0):
        self.cache_time_ns = cache_time_ns
        self.max_extrapolation_ns = int(max_extrapolation_ns)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()
        self._newest_ns = 0
        self._inserts = 0

    # ------------------------------------------------------------------ filling
    def set_transform(
        self, parent: str, child: str, t_ns: int, transform: Transform, static: bool = False
    ) -> None:
        """Store ``transform`` (p_parent = R p_child + t) for the edge parent -> child at ``t_ns``."""
        parent, child = _norm_frame(parent), _norm_frame(child)
        if parent == child:
            raise ValueError(f"transform from frame '{child}' to itself")
        q = np.asarray(transform.quat(), np.float64)
        t = np.asarray(transform.translation, np.float64).reshape(3)
        if not (np.isfinite(q).all() and np.isfinite(t).all()):
            raise ValueError(f"non-finite transform {parent} -> {child}: t {t.tolist()}, q {q.tolist()}")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.times[:] = [0]
                edge.trans[:] = [t]
                edge.quats[:] = [q]
                return
            t_ns = int(t_ns)
            if not edge.times or t_ns > edge.times[-1]:
                i = len(edge.times)
            else:
                i = bisect.bisect_left(edge.times, t_ns)
                if i < len(edge.times) and edge.times[i] == t_ns:  # same stamp: replace
                    edge.trans[i], edge.quats[i] = t, q
                    return
            edge.times.insert(i, t_ns)
            edge.trans.insert(i, t)
            edge.quats.insert(i, q)
            if self.cache_time_ns is not None:
                k = bisect.bisect_left(edge.times, edge.times[-1] - self.cache_time_ns)
                if k > 0:
                    del edge.times[:k], edge.trans[:k], edge.quats[:k]
                self._newest_ns = max(self._newest_ns, t_ns)
                self._inserts += 1
                if self._inserts % 1000 == 0:
                    self._forget_idle_edges()

    def _forget_idle_edges(self) -> None:
        """Drop dynamic edges with no sample within ``cache_time_ns`` of the newest one (frames
        that stopped being published, e.g. per-object tracking frames), so hours of /tf with
        ever-new frame names do not grow the buffer without bound. Caller holds the lock."""
        horizon = self._newest_ns - self.cache_time_ns
        for child in [
            c for c, e in self._edges.items() if not e.static and e.times and e.times[-1] < horizon
        ]:
            del self._edges[child]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._edges.clear()
            self._newest_ns = 0

    def clear_dynamic(self) -> None:
        """Forget the dynamic samples but keep static transforms (a bag restarted: time jumped
        back, while /tf_static, latched once, stays valid)."""
        with self._lock:
            for child in [c for c, e in self._edges.items() if not e.static]:
                del self._edges[child]
            self._newest_ns = 0

    # ------------------------------------------------------------------ queries
    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def has_frame(self, frame: str) -> bool:
        return _norm_frame(frame) in self.frames()

    def parent_of(self, frame: str) -> str | None:
        with self._lock:
            e = self._edges.get(_norm_frame(frame))
            return None if e is None else e.parent

    def _ancestry(self, frame: str) -> list[str]:
        chain = [frame]
        seen = {frame}
        while (e := self._edges.get(chain[-1])) is not None:
            if e.parent in seen:  # a loop can only come from bad input; stop rather than spin
                break
            chain.append(e.parent)
            seen.add(e.parent)
        return chain

    def _edge_range(self, child: str) -> tuple[int, int] | None:
        e = self._edges[child]
        return None if e.static else (e.times[0], e.times[-1])

    def _edge_at(self, child: str, t_ns: int) -> Transform:
        e = self._edges[child]
        if e.static:
            return Transform(quat_to_matrix(*e.quats[0]), e.trans[0].copy())
        times = e.times
        lo = times[0] - self.max_extrapolation_ns
        hi = times[-1] + self.max_extrapolation_ns
        if not lo <= t_ns <= hi:
            side = "before the first" if t_ns < times[0] else "after the last"
            raise TfLookupError(
                EXTRAPOLATION,
                f"time {t_ns * 1e-9:.9f} is {side} transform {e.parent} -> {child} "
                f"(stored {times[0] * 1e-9:.9f} .. {times[-1] * 1e-9:.9f})",
            )
        i = bisect.bisect_left(times, t_ns)
        if i < len(times) and times[i] == t_ns:
            return Transform(quat_to_matrix(*e.quats[i]), e.trans[i].copy())
        if i == 0 or i == len(times):  # tolerated extrapolation: hold the end sample
            j = 0 if i == 0 else len(times) - 1
            return Transform(quat_to_matrix(*e.quats[j]), e.trans[j].copy())
        t0, t1 = times[i - 1], times[i]
        a = (t_ns - t0) / (t1 - t0)
        trans = e.trans[i - 1] + a * (e.trans[i] - e.trans[i - 1])
        return Transform(quat_to_matrix(*slerp(e.quats[i - 1], e.quats[i], a)), trans)

    def _to_ancestor(self, chain: list[str], t_ns: int) -> Transform:
        """ancestor <- chain[0], composed along ``chain`` (chain[-1] is the ancestor)."""
        tf = Transform.identity()
        for child in chain[:-1]:
            tf = self._edge_at(child, t_ns) @ tf
        return tf

    def lookup_transform(self, target: str, source: str, t_ns: int = 0) -> Transform:
        """target <- source at ``t_ns`` (0 = latest common time); raises :class:`TfLookupError`."""
        target, source = _norm_frame(target), _norm_frame(source)
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for frame in (target, source):
                if frame not in known:
                    raise TfLookupError(UNKNOWN_FRAME, f"frame '{frame}' does not exist in the buffer")
            if target == source:
                return Transform.identity()
            up_s = self._ancestry(source)
            up_t = self._ancestry(target)
            common = next((f for f in up_s if f in set(up_t)), None)
            if common is None:
                raise TfLookupError(
                    NOT_CONNECTED,
                    f"'{source}' (root '{up_s[-1]}') and '{target}' (root '{up_t[-1]}') are not in one tree",
                )
            path_s = up_s[: up_s.index(common) + 1]
            path_t = up_t[: up_t.index(common) + 1]
            if t_ns == 0:
                ranges = [r for c in path_s[:-1] + path_t[:-1] if (r := self._edge_range(c))]
                if ranges:
                    t_ns = min(r[1] for r in ranges)
            common_from_source = self._to_ancestor(path_s, t_ns)
            common_from_target = self._to_ancestor(path_t, t_ns)
        return common_from_target.inverse() @ common_from_source

    def lookup(self, target: str, source: str, t_ns: int = 0) -> Transform | None:
        """target <- source at ``t_ns``, or None when it cannot be computed (see :meth:`resolve`)."""
        return self.resolve(target, source, t_ns)[0]

    def resolve(
        self, target: str, source: str, t_ns: int = 0
    ) -> tuple[Transform | None, TfLookupError | None]:
        """(transform, None) or (None, error carrying the reason code and a readable detail)."""
        try:
            return self.lookup_transform(target, source, t_ns), None
        except TfLookupError as e:
            return None, e

    def lookup_full(
        self, target: str, target_t_ns: int, source: str, source_t_ns: int, fixed: str
    ) -> Transform:
        """target at ``target_t_ns`` <- source at ``source_t_ns``, through a frame ``fixed`` in time
        (e.g. odom), as tf2's advanced lookup: compensates motion between two stamps."""
        fixed_from_source = self.lookup_transform(fixed, source, source_t_ns)
        target_from_fixed = self.lookup_transform(target, fixed, target_t_ns)
        return target_from_fixed @ fixed_from_source
