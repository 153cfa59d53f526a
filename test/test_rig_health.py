"""Which rig cameras are usable: silence by arrival time and clock offsets (ROS-free)."""

from __future__ import annotations

from bore_depth_ros.core.rig_health import CLOCK_OFFSET, SILENT, RigHealth
from bore_depth_ros.core.stats import RecentCounts

MS = 1_000_000
CAMS = ["front", "left", "back", "right"]


def feed(h: RigHealth, t0: int, frames: int, period: int = 100 * MS, skip=(), lead=None, delay=None):
    """Frames at ``period``; camera stamps = capture time + lead; arrival = capture + delay."""
    lead, delay = lead or {}, delay or {}
    for k in range(frames):
        capture = t0 + k * period
        for i, cam in enumerate(CAMS):
            if cam not in skip:
                h.arrived(
                    i, capture + lead.get(cam, 0), capture + 5 * MS + delay.get(cam, (k * 7919) % 20 * MS)
                )
                h.in_set(i, capture + 5 * MS) if cam not in lead else None
    return t0 + frames * period


def test_silence_uses_three_frame_periods_by_default_and_a_fixed_timeout_when_set():
    h = RigHealth(CAMS, slop_ns=10 * MS)
    t = feed(h, 0, 20)
    assert h.silent(t) == {}
    assert abs(h.camera_timeout_ns(0) - 300 * MS) <= 20 * MS
    t = feed(h, t, 5, skip=("back",))
    assert list(h.silent(t)) == [2] and h.absent(t) == {2: SILENT}
    assert h.describe(2, SILENT, t).startswith("back: no usable image for 0.6 s")
    h.timeout_ns = 1_000 * MS
    assert h.silent(t) == {}
    feed(h, t, 1)  # it returns: present at once
    assert h.absent(t + 100 * MS) == {}


def test_a_camera_never_heard_from_is_silent_after_the_rigs_timeout():
    h = RigHealth(CAMS, slop_ns=10 * MS)
    t = feed(h, 0, 10, skip=("left",))
    assert h.absent(t) == {1: SILENT}
    assert "left: no usable image yet, after" in h.describe(1, SILENT, t)


def test_a_clock_offset_is_named_with_its_size_and_left_out_once_it_stops_matching():
    h = RigHealth(CAMS, slop_ns=30 * MS)
    t = feed(h, 0, 20, lead={"left": 200 * MS})
    assert h.clock_offsets().keys() == {1}
    assert abs(h.clock_offsets()[1] - 200 * MS) <= 25 * MS
    assert h.describe(1, CLOCK_OFFSET, t).startswith("left stamps are 0.2")
    assert "ahead of the rig: check clock sync (or set time_offset.left)" in h.describe(1, CLOCK_OFFSET, t)
    assert h.absent(t) == {1: CLOCK_OFFSET}  # never in a set for longer than its timeout
    h.forget_clock(1)
    assert h.clock_offsets() == {} and h.absent(t) == {}


def test_a_slower_transport_that_still_synchronises_is_named_but_kept():
    h = RigHealth(CAMS, slop_ns=30 * MS)
    t0 = 0
    for k in range(20):
        capture = t0 + k * 100 * MS
        for i, cam in enumerate(CAMS):
            h.arrived(i, capture, capture + (80 if cam == "back" else 5) * MS)
            h.in_set(i, capture + 80 * MS)
    assert 2 in h.clock_offsets()
    assert h.absent(capture + 100 * MS) == {}


def test_no_majority_singles_nobody_out():
    h = RigHealth(["a", "b"], slop_ns=10 * MS)
    for k in range(10):
        h.arrived(0, k * 100 * MS, k * 100 * MS + MS)
        h.arrived(1, k * 100 * MS + 200 * MS, k * 100 * MS + MS)
    assert h.clock_offsets() == {}
    assert set(h.disagreement()) == {0, 1}


def test_recent_counts_follow_the_window_and_survive_a_counter_reset():
    now = [0.0]
    rc = RecentCounts(10.0, clock=lambda: now[0])
    assert rc.update({"overload": 3}) == {"overload": 3}
    now[0] = 5.0
    assert rc.update({"overload": 3}) == {"overload": 3}
    now[0] = 11.0
    assert rc.update({"overload": 3}) == {}  # the overload was more than 10 s ago: cleared
    now[0] = 17.0
    assert rc.update({"overload": 4}) == {"overload": 1}
    now[0] = 18.0
    assert rc.update({"overload": 1}) == {"overload": 1}  # counters were reset
