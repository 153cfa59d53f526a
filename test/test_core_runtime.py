"""Tests for the ROS-free runtime helpers: LatestWorker (newest-wins worker thread), InfoPairer
(image <-> camera_info pairing by stamp) and the RateMeter / SequenceGaps statistics.

Worker tests block ``process`` on threading.Event objects so the busy/waiting state is controlled
exactly; RateMeter uses an injected fake clock. Nothing sleeps except a short poll in one test.
"""

import threading
import time

import pytest

from bore_depth_ros.core.pairing import InfoPairer
from bore_depth_ros.core.stats import RateMeter, SequenceGaps
from bore_depth_ros.core.worker import LatestWorker

T = 5.0  # generous timeout for events that happen almost at once


class Gated:
    """A ``process`` callable that records items and blocks on ``gate`` until the test opens it."""

    def __init__(self, fail_on=()):
        self.seen, self.errors, self.threads = [], [], []
        self.started, self.gate = threading.Event(), threading.Event()
        self.fail_on = set(fail_on)

    def __call__(self, item):
        self.seen.append(item)
        self.threads.append(threading.current_thread())
        self.started.set()
        assert self.gate.wait(T), "test never opened the gate"
        if item in self.fail_on:
            raise ValueError(f"bad {item}")

    def on_error(self, exc, item):
        self.errors.append((exc, item))


def make_worker(proc):
    w = LatestWorker(proc, proc.on_error, name="test_core_runtime_worker")
    w.start()
    return w


def accounted(w):
    return w.processed + w.errors + w.skipped + w.waiting() + int(w.busy())


def test_worker_newest_wins_and_accounting():
    proc = Gated()
    w = make_worker(proc)
    try:
        assert w.submit("A") is None
        assert proc.started.wait(T)  # worker is now busy with A
        assert w.submit("B") is None
        assert w.submit("C") == "B"  # B replaced before the worker could take it
        assert (w.skipped, w.waiting(), w.busy()) == (1, 1, True)
        assert accounted(w) == 3
        proc.gate.set()
        assert w.wait_idle(T)
        assert proc.seen == ["A", "C"]
        assert (w.processed, w.errors, w.skipped, w.waiting(), w.busy()) == (2, 0, 1, 0, False)
        assert accounted(w) == 3
    finally:
        proc.gate.set()
        w.stop(T)


def test_worker_burst_accounting_identity():
    proc = Gated()
    proc.gate.set()  # never blocks: how many are skipped depends on scheduling
    w = make_worker(proc)
    try:
        n = 200
        for i in range(n):
            w.submit(i)
        assert w.wait_idle(T)
        assert w.processed + w.skipped + w.waiting() + int(w.busy()) == n
        assert proc.seen == sorted(set(proc.seen)) and proc.seen[-1] == n - 1  # newest always runs
    finally:
        w.stop(T)


def test_worker_error_is_counted_and_worker_keeps_running():
    proc = Gated(fail_on={"bad"})
    proc.gate.set()
    w = make_worker(proc)
    try:
        w.submit("bad")
        assert w.wait_idle(T)
        assert (w.processed, w.errors) == (0, 1)
        [(exc, item)] = proc.errors
        assert isinstance(exc, ValueError) and str(exc) == "bad bad" and item == "bad"
        w.submit("good")
        assert w.wait_idle(T)
        assert (w.processed, w.errors, proc.seen) == (1, 1, ["bad", "good"])
    finally:
        w.stop(T)


def test_worker_survives_raising_on_error():
    def on_error(exc, item):
        raise RuntimeError("handler broke")

    seen = []
    w = LatestWorker(lambda item: seen.append(item) if item != "bad" else 1 / 0, on_error)
    w.start()
    try:
        w.submit("bad")
        assert w.wait_idle(T)
        w.submit("ok")
        assert w.wait_idle(T)
        assert (seen, w.errors, w.processed) == (["ok"], 1, 1)
    finally:
        w.stop(T)


def test_worker_stop_returns_waiting_item_and_ends_thread():
    proc = Gated()
    w = make_worker(proc)
    w.submit("A")
    assert proc.started.wait(T)
    w.submit("B")
    result = []
    stopper = threading.Thread(target=lambda: result.append(w.stop(T)))
    stopper.start()
    deadline = time.monotonic() + T
    while w.waiting() and time.monotonic() < deadline:  # stop() takes B before joining
        time.sleep(0.001)
    proc.gate.set()  # let A finish so the join completes
    stopper.join(T)
    assert result == ["B"]
    assert proc.seen == ["A"] and w.processed == 1
    assert not w.running and not proc.threads[0].is_alive()
    assert w.stop(T) is None  # idempotent


# ---------------------------------------------------------------------------------- pairing
def test_pairing_info_before_image_and_image_before_info():
    p = InfoPairer()
    assert p.add_info(1, "i1") == []
    assert p.add_image(1, "a") == [("a", "i1")]  # info first: paired at once
    assert p.add_image(2, "b") == [] and p.waiting == 1  # image first: waits
    assert p.add_info(2, "i2") == [("b", "i2")]
    assert (p.waiting, p.fallbacks, p.exact) == (0, 0, True)


def test_pairing_first_info_with_own_stamp_is_exact():
    p = InfoPairer()
    assert p.add_image(7, "a") == []
    assert p.add_info(7, "i7") == [("a", "i7")]
    assert (p.fallbacks, p.waiting) == (0, 0)


def test_two_waiting_images_pair_exactly_with_infos_arriving_afterwards():
    p = InfoPairer()
    p.add_info(1, "i1")
    assert p.add_image(2, "b") == []
    assert p.add_image(3, "c") == []  # interleaving: two images ahead of their infos
    assert p.waiting == 2
    assert p.add_info(2, "i2") == [("b", "i2")]
    assert p.waiting == 1
    assert p.add_info(3, "i3") == [("c", "i3")]
    assert (p.waiting, p.fallbacks, p.exact) == (0, 0, True)


def test_newer_info_releases_older_waiting_images_older_info_does_not():
    p = InfoPairer()
    p.add_info(1, "i1")
    for t, item in ((2, "a"), (3, "b"), (5, "c")):
        assert p.add_image(t, item) == []
    assert p.add_info(2, "i2") == [("a", "i2")]  # exact; b's and c's own infos may still come
    assert p.waiting == 2 and p.fallbacks == 0
    assert p.add_info(4, "i4") == [("b", "i4")]  # info 3 never came: b falls back, c keeps waiting
    assert (p.fallbacks, p.waiting) == (1, 1)
    assert p.add_info(5, "i5") == [("c", "i5")]
    assert (p.fallbacks, p.waiting, p.exact) == (1, 0, True)


def test_newer_info_releases_several_older_waiting_images_with_fallback():
    p = InfoPairer()
    p.add_info(1, "i1")
    p.add_image(2, "a")
    p.add_image(3, "b")
    p.add_image(6, "c")
    assert p.add_info(4, "i4") == [("a", "i4"), ("b", "i4")]  # oldest first
    assert (p.fallbacks, p.waiting, p.exact) == (2, 1, True)
    assert p.add_info(6, "i6") == [("c", "i6")]  # exact pair restarts the fallback run
    assert (p.fallbacks, p.waiting, p.exact) == (2, 0, True)


def test_image_pushed_out_of_full_waiting_queue_falls_back():
    p = InfoPairer(max_waiting=3)
    p.add_info(0, "i0")
    for t in (1, 2, 3):
        assert p.add_image(t, t) == []
    assert p.waiting == 3 and p.fallbacks == 0
    assert p.add_image(4, 4) == [(1, "i0")]  # oldest pushed out, takes the newest info
    assert (p.waiting, p.fallbacks, p.exact) == (3, 1, True)
    assert p.add_info(2, "i2") == [(2, "i2")]  # the others still pair exactly
    assert p.add_info(3, "i3") == [(3, "i3")]
    assert p.add_info(4, "i4") == [(4, "i4")]
    assert (p.waiting, p.fallbacks, p.exact) == (0, 1, True)


def test_before_any_info_only_newest_image_waits():
    p = InfoPairer()
    assert p.add_image(1, "a") == []
    assert p.add_image(2, "b") == [("a", None)]
    assert p.add_image(3, "c") == [("b", None)]
    assert (p.fallbacks, p.waiting, p.exact) == (0, 1, True)
    assert p.add_info(3, "i3") == [("c", "i3")]
    assert (p.fallbacks, p.waiting, p.exact) == (0, 0, True)


@pytest.mark.parametrize("stamp", [3, 9])
def test_first_info_releases_waiting_image_whatever_its_stamp(stamp):
    p = InfoPairer()
    p.add_image(5, "a")
    assert p.add_info(stamp, "first") == [("a", "first")]
    assert (p.fallbacks, p.waiting) == (1, 0)


def test_three_fallbacks_in_a_row_switch_to_newest_mode():
    p = InfoPairer()
    p.add_info(0, "i0")
    for k in (1, 2):  # two fallbacks, then an exact pair: the run restarts
        p.add_image(10 * k + 1, k)
        assert p.add_info(10 * k + 5, f"i{k}") == [(k, f"i{k}")]
    p.add_info(30, "i30")
    assert p.add_image(30, "x") == [("x", "i30")]
    assert p.exact is True and p.fallbacks == 2
    for k in (4, 5, 6):
        p.add_image(10 * k + 1, k)
        assert p.add_info(10 * k + 5, f"i{k}") == [(k, f"i{k}")]
    assert p.exact is False and p.fallbacks == 5
    assert p.add_image(100, "late") == [("late", "i6")]  # newer than every info: no waiting
    assert p.add_image(101, "later") == [("later", "i6")]
    assert p.waiting == 0 and p.fallbacks == 7
    assert p.add_info(100, "i100") == []  # nothing waits any more
    assert p.add_image(100, "same") == [("same", "i100")]  # a cached own info still pairs
    assert p.exact is True  # ...and an image finding its own camera_info restores exact mode


def test_one_info_releasing_several_images_counts_once_towards_the_limit():
    p = InfoPairer(mismatch_limit=2)
    p.add_info(0, "i0")
    p.add_image(1, 1)
    p.add_image(2, 2)
    assert p.add_info(5, "i5") == [(1, "i5"), (2, "i5")]
    assert (p.fallbacks, p.exact) == (2, True)  # two fallbacks, one event
    assert p.add_image(3, "old") == [("old", "i5")]  # older than the newest info: at once
    assert (p.fallbacks, p.waiting, p.exact) == (3, 0, False)


def test_switch_to_newest_mode_keeps_images_in_stamp_order():
    """Stamps never match and images outrun camera_info: the queue overflows, the third fallback
    switches to newest mode, and later images must not overtake the ones still waiting (the
    worker is newest-wins, so an older frame submitted after a newer one replaces it)."""
    p = InfoPairer()
    out = []
    for kind, t in [
        ("i", 0),
        ("m", 1),
        ("i", 10),
        ("m", 11),
        ("i", 20),
        ("m", 21),
        ("m", 31),
        ("m", 41),
        ("m", 51),
        ("m", 61),
        ("i", 30),
    ]:
        out += p.add_info(t, f"i{t}") if kind == "i" else p.add_image(t, t)
    assert p.exact is False and p.waiting == 0
    released = [item for item, _ in out]
    assert sorted(released) == [1, 11, 21, 31, 41, 51, 61]
    # a new image in newest mode must not be paired while older ones still wait (it once was:
    # [1, 11, 21, 61, 31, 41, 51])
    assert released == sorted(released), f"images released out of stamp order: {released}"


def test_clear_returns_waiting_items_and_resets():
    p = InfoPairer(mismatch_limit=1)
    p.add_info(0, "i0")
    p.add_image(1, "a")
    p.add_info(2, "i2")  # one fallback: limit 1 reached
    assert p.exact is False
    assert p.clear() == []
    assert (len(p), p.waiting, p.exact, p.latest()) == (0, 0, True, None)
    p.add_info(0, "i0")
    p.add_image(1, "a")
    p.add_image(2, "b")
    assert p.waiting == 2
    assert p.clear() == ["a", "b"]  # oldest first
    assert (len(p), p.waiting, p.exact, p.latest()) == (0, 0, True, None)
    assert p.add_image(6, "c") == []  # no info any more: waits again
    assert p.waiting == 1


def test_a_restart_seen_on_the_image_keeps_that_images_own_camera_info():
    # the fuzz_deep reproduction: camera_info at 50 arrives (no restart: the previous info was 10),
    # then the image at 50 shows the restart (the previous image was a broken one at 100)
    p = InfoPairer()
    p.add_info(10, "i10")
    p.add_info(50, "i50")
    assert p.clear(keep_stamp=50) == []
    assert (len(p), p.latest()) == (1, "i50")
    assert p.add_image(50, "img50") == [("img50", "i50")]


# ---------------------------------------------------------------------------------- stats
def test_rate_meter_regular_ticks_and_expiry():
    now = [100.0]  # fake monotonic clock
    m = RateMeter(window=5.0, clock=lambda: now[0])
    assert m.rate() == 0.0
    for i in range(100):  # 10 Hz for 10 s
        now[0] = 100.0 + i / 10
        m.tick()
    assert m.rate() == pytest.approx(10.0) and m.total == 100
    now[0] += 5.0 + 1e-3  # the whole window passed without an event
    assert m.rate() == 0.0
    m.tick()
    assert m.rate() == pytest.approx(1 / 5.0) and m.total == 101  # a lone event in the window


def test_sequence_gaps():
    g = SequenceGaps()
    assert [g.add(s) for s in (1, 2, 5, 6, 10)] == [0, 0, 2, 0, 3]
    assert g.lost == 5
    assert g.add(0) == 0 and g.add(None) == 0 and g.lost == 5  # unknown numbers are ignored
    assert g.add(11) == 0  # ignoring did not disturb the count
    assert g.add(3) == 0 and g.add(4) == 0  # a restarted publisher: counting restarts at 3
    assert g.add(4) == 0 and g.add(7) == 2  # a repeated number restarts too
    assert g.lost == 7
