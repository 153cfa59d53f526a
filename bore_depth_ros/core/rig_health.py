"""Which cameras of a rig can be used right now (no ROS): silence and clock offsets.

Both are judged from arrival times on the receiver's clock (the node's clock: sim time when
replaying with ``use_sim_time``), never from the stamps alone, so one camera with a wrong clock
cannot make the others look silent.

- **Silent**: no image for longer than the camera's timeout: ``timeout_ns`` when positive, else
  (automatic) ``AUTO_PERIODS`` of its own frame periods, at least ``MIN_AUTO_TIMEOUT_NS``. A
  camera never heard from is judged with the rig's median period, counted from the first image of
  any camera.
- **Clock offset**: the camera's stamps sit consistently more than ``slop`` from the rig's. For
  each camera its *lead* is the largest ``stamp - arrival`` over its last ``WINDOW`` images (the
  frame with the least transport and queueing delay: delays only ever lower it); the rig's lead is
  the median over the cameras, and a camera whose lead differs from it by more than ``slop`` is
  named. That needs a clear majority: when half the rig or more disagrees nobody is singled out
  (:meth:`RigHealth.disagreement` says so instead).
- **Out of sync**: a camera with a clock offset whose images have also not been part of any
  synchronized set for longer than its timeout (:meth:`RigHealth.in_set`). A camera that merely
  has a slower transport (an offset by arrival times, yet its stamps still match) keeps being used.

A camera that is silent or out of sync is *absent*: the surround node leaves it out of the
synchronized sets and names it. It rejoins with its next image (silent) or once its stamps agree
(fixed clock, or a ``time_offset`` that compensates; :meth:`RigHealth.forget_clock`).
"""

from __future__ import annotations

import collections
import statistics

SILENT = "camera_silent"
CLOCK_OFFSET = "clock_offset"
WINDOW = 30  # images per camera kept for the period and lead estimates
MIN_SAMPLES = 5  # images a camera needs before its clock is judged
AUTO_PERIODS = 3.0
MIN_AUTO_TIMEOUT_NS = 200_000_000
UNKNOWN_PERIOD_TIMEOUT_NS = 1_000_000_000  # automatic timeout before any period is known


class _Camera:
    def __init__(self):
        self.last_arrival: int | None = None
        self.periods: collections.deque[int] = collections.deque(maxlen=WINDOW)
        self.leads: collections.deque[int] = collections.deque(maxlen=WINDOW)
        self.last_in_set: int | None = None

    def period(self) -> int | None:
        return int(statistics.median(self.periods)) if self.periods else None

    def lead(self) -> int | None:
        return max(self.leads) if len(self.leads) >= MIN_SAMPLES else None


class RigHealth:
    """Per-camera arrival bookkeeping of an N-camera rig; all times in nanoseconds."""

    def __init__(self, names: list[str], slop_ns: int, timeout_ns: int = 0):
        self.names = list(names)
        self.slop_ns = int(slop_ns)
        self.timeout_ns = int(timeout_ns)  # 0: automatic
        self.reset()

    def reset(self) -> None:
        """Forget every estimate (a restart: the clocks start over)."""
        self._cams = [_Camera() for _ in self.names]
        self._first_arrival: int | None = None

    def arrived(self, i: int, stamp_ns: int, now_ns: int) -> None:
        """Camera ``i`` delivered an image stamped ``stamp_ns`` at ``now_ns``."""
        cam = self._cams[i]
        if cam.last_arrival is not None and now_ns > cam.last_arrival:
            cam.periods.append(now_ns - cam.last_arrival)
        cam.last_arrival = now_ns
        cam.leads.append(int(stamp_ns) - int(now_ns))
        if self._first_arrival is None:
            self._first_arrival = now_ns

    def in_set(self, i: int, now_ns: int) -> None:
        """Camera ``i``'s image was part of a synchronized set at ``now_ns``."""
        self._cams[i].last_in_set = now_ns

    def forget_clock(self, i: int) -> None:
        """Drop camera ``i``'s lead estimate (its time offset was changed)."""
        self._cams[i].leads.clear()

    def camera_timeout_ns(self, i: int) -> int:
        if self.timeout_ns > 0:
            return self.timeout_ns
        period = self._cams[i].period()
        if period is None:
            known = [p for p in (c.period() for c in self._cams) if p is not None]
            if not known:
                return UNKNOWN_PERIOD_TIMEOUT_NS
            period = int(statistics.median(known))
        return max(int(AUTO_PERIODS * period), MIN_AUTO_TIMEOUT_NS)

    def silent_for(self, i: int, now_ns: int) -> int | None:
        """How long camera ``i`` has been silent (ns), None before any camera delivered."""
        since = self._cams[i].last_arrival
        if since is None:
            since = self._first_arrival
        return None if since is None else max(0, now_ns - since)

    def silent(self, now_ns: int) -> dict[int, int]:
        """Cameras silent for longer than their timeout -> for how long (ns)."""
        out = {}
        for i in range(len(self._cams)):
            quiet = self.silent_for(i, now_ns)
            if quiet is not None and quiet > self.camera_timeout_ns(i):
                out[i] = quiet
        return out

    def offsets(self) -> dict[int, int]:
        """Each judged camera's lead minus the rig's (ns; > 0: its stamps are ahead)."""
        leads = {i: lead for i, c in enumerate(self._cams) if (lead := c.lead()) is not None}
        if len(leads) < 2:
            return {}
        ref = int(statistics.median(leads.values()))
        return {i: lead - ref for i, lead in leads.items()}

    def clock_offsets(self) -> dict[int, int]:
        """Cameras whose stamps are more than ``slop`` off the rig's -> offset (ns; > 0: ahead).
        Empty unless a clear majority of the judged cameras agrees."""
        offsets = self.offsets()
        off = {i: o for i, o in offsets.items() if abs(o) > self.slop_ns}
        return off if 2 * len(off) < len(offsets) else {}

    def disagreement(self) -> dict[int, int]:
        """Every judged camera's offset when half the rig or more is off by more than ``slop``
        (no majority to single anyone out), else {}."""
        offsets = self.offsets()
        off = [o for o in offsets.values() if abs(o) > self.slop_ns]
        return offsets if offsets and 2 * len(off) >= len(offsets) else {}

    def absent(self, now_ns: int) -> dict[int, str]:
        """Cameras to leave out of the sets now -> reason (:data:`SILENT`, :data:`CLOCK_OFFSET`)."""
        out = {}
        for i in self.clock_offsets():
            since = self._cams[i].last_in_set or self._first_arrival or now_ns
            if now_ns - since > self.camera_timeout_ns(i):
                out[i] = CLOCK_OFFSET
        out.update({i: SILENT for i in self.silent(now_ns)})
        return out

    def describe(self, i: int, reason: str, now_ns: int) -> str:
        """The operator's sentence for an absent camera."""
        name = self.names[i]
        if reason == CLOCK_OFFSET:
            off = self.clock_offsets().get(i, 0)
            side = "ahead of" if off > 0 else "behind"
            return (
                f"{name} stamps are {abs(off) / 1e9:.2f} s {side} the rig: check clock sync "
                f"(or set time_offset.{name})"
            )
        quiet = self.silent_for(i, now_ns) or 0
        heard = self._cams[i].last_arrival is not None
        return (
            f"{name}: no usable image {'for' if heard else 'yet, after'} {quiet / 1e9:.1f} s "
            f"(timeout {self.camera_timeout_ns(i) / 1e9:.2f} s)"
        )
