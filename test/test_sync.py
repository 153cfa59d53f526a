"""The N-stream approximate-time synchroniser: expected groups and drop counts."""

import numpy as np
import pytest

from bore_depth_ros.core.sync import ApproximateSynchronizer

MS = 1_000_000
PERIOD = 100 * MS


def feed(sync, arrivals):
    groups = []
    for stream, stamp in arrivals:
        groups += sync.add(stream, stamp, (stream, stamp)).groups
    return groups


def frames(n_frames, n_streams, jitter=None, skip=()):
    out = []
    for f in range(n_frames):
        for s in range(n_streams):
            if (s, f) in skip:
                continue
            out.append((s, f * PERIOD + (0 if jitter is None else int(jitter[f, s]))))
    return out


def test_synchronous_streams_group_one_to_one():
    sync = ApproximateSynchronizer(6, slop_ns=10 * MS)
    groups = feed(sync, frames(5, 6))
    assert [g.stamps for g in groups] == [[f * PERIOD] * 6 for f in range(5)]
    assert sync.drops.total() == 0 and sync.pending() == [0] * 6


def test_jitter_within_slop_is_grouped_and_spread_is_bounded():
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-4 * MS, 4 * MS, size=(20, 6))
    sync = ApproximateSynchronizer(6, slop_ns=10 * MS)
    groups = feed(sync, frames(20, 6, jitter))
    assert len(groups) == 20 and sync.drops.total() == 0
    assert all(g.spread <= 10 * MS for g in groups)
    assert all(item == (s, g.stamps[s]) for g in groups for s, item in enumerate(g.items))


def test_jitter_beyond_slop_is_not_grouped():
    sync = ApproximateSynchronizer(2, slop_ns=5 * MS)
    groups = feed(sync, [(0, 0), (1, 8 * MS), (0, PERIOD), (1, PERIOD + 2 * MS)])
    assert [g.stamps for g in groups] == [[PERIOD, PERIOD + 2 * MS]]
    assert sync.drops.as_dict() == {"unmatched": 2}


def test_a_missing_frame_drops_its_peers_as_unmatched():
    sync = ApproximateSynchronizer(3, slop_ns=10 * MS)
    groups = feed(sync, frames(4, 3, skip={(2, 1)}))
    assert [g.stamps[0] for g in groups] == [0, 2 * PERIOD, 3 * PERIOD]
    assert sync.drops.as_dict() == {"unmatched": 2}


def test_reordered_arrivals_within_the_queue_are_grouped():
    sync = ApproximateSynchronizer(2, slop_ns=10 * MS)
    arrivals = [(0, 0), (1, 0), (0, 2 * PERIOD), (0, PERIOD), (1, PERIOD), (1, 2 * PERIOD)]
    groups = feed(sync, arrivals)
    assert [g.stamps for g in groups] == [[0, 0], [PERIOD, PERIOD], [2 * PERIOD, 2 * PERIOD]]
    assert sync.drops.total() == 0


def test_late_duplicate_and_overflow_are_counted_by_reason():
    sync = ApproximateSynchronizer(2, slop_ns=10 * MS, queue_size=3)
    feed(sync, [(0, 0), (1, 0), (0, PERIOD), (1, PERIOD)])
    ev = sync.add(0, PERIOD // 2, "late")  # older than the last group
    assert ev.drops == [(0, PERIOD // 2, "late")] and not ev.groups
    sync.add(0, 2 * PERIOD, "a")
    ev = sync.add(0, 2 * PERIOD, "b")  # same stamp twice: newer replaces
    assert ev.drops == [(0, 2 * PERIOD, "duplicate")]
    for f in (3, 4, 5):  # stream 1 silent: queue of 3 overflows
        sync.add(0, f * PERIOD, f)
    assert sync.drops.as_dict() == {"late": 1, "duplicate": 1, "queue_overflow": 1}
    g = sync.add(1, 5 * PERIOD, "x").groups
    assert len(g) == 1 and g[0].items == [5, "x"]
    assert sync.drops.counts["unmatched"] == 2  # frames 3 and 4 of stream 0


def test_stamps_jumping_back_reset_the_synchroniser():
    sync = ApproximateSynchronizer(2, slop_ns=10 * MS)
    feed(sync, [(0, 100 * PERIOD), (1, 100 * PERIOD), (0, 101 * PERIOD)])
    ev = sync.add(1, 0, "restart")  # the bag started over
    assert ev.reset and sync.resets == 1
    assert ev.drops == [(0, 101 * PERIOD, "reset")]
    groups = feed(sync, [(0, 0)])
    assert [g.stamps for g in groups] == [[0, 0]]


def test_same_arrivals_give_the_same_groups():
    rng = np.random.default_rng(3)
    arrivals = frames(30, 4, rng.uniform(-6 * MS, 6 * MS, size=(30, 4)), skip={(1, 5), (3, 9)})
    order = rng.permutation(len(arrivals))
    arrivals = [
        arrivals[i] for i in sorted(order[:], key=lambda i: arrivals[i][1] + rng.integers(0, 30 * MS))
    ]
    a = ApproximateSynchronizer(4, 10 * MS)
    b = ApproximateSynchronizer(4, 10 * MS)
    ga, gb = feed(a, arrivals), feed(b, arrivals)
    assert [g.stamps for g in ga] == [g.stamps for g in gb]
    assert a.drops.as_dict() == b.drops.as_dict()


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError):
        ApproximateSynchronizer(0, 1)
    with pytest.raises(ValueError):
        ApproximateSynchronizer(2, -1)
    with pytest.raises(IndexError):
        ApproximateSynchronizer(2, 1).add(2, 0, None)


def test_flush_reports_what_is_left_waiting():
    sync = ApproximateSynchronizer(2, slop_ns=10 * MS)
    feed(sync, [(0, 0), (1, 0), (0, PERIOD), (0, 2 * PERIOD)])
    ev = sync.flush()
    assert ev.drops == [(0, PERIOD, "end_of_input"), (0, 2 * PERIOD, "end_of_input")]
    assert sync.pending() == [0, 0] and sync.drops.counts["end_of_input"] == 2


def test_absent_streams_are_left_out_and_rejoin_with_their_next_message():
    sync = ApproximateSynchronizer(3, slop_ns=5 * MS)
    for s in range(3):
        sync.add(s, 100 * MS, f"a{s}")
    sync.add(2, 200 * MS, "stale")  # queued, then the camera fails
    ev = sync.set_absent({2: "camera_silent"})
    assert ev.drops == [(2, 200 * MS, "camera_silent")]
    sync.add(0, 300 * MS, "b0")
    ev = sync.add(1, 301 * MS, "b1")
    (group,) = ev.groups
    assert group.items == ["b0", "b1", None] and group.present == [0, 1] and not group.complete
    assert group.newest == 301 * MS and group.spread == 1 * MS
    assert sync.add(2, 350 * MS, "ignored").drops == [(2, 350 * MS, "camera_silent")]
    sync.set_absent({})
    for s in range(3):
        ev = sync.add(s, 400 * MS, f"c{s}")
    assert ev.groups[0].items == ["c0", "c1", "c2"]


def test_a_restart_is_judged_per_stream():
    # a stream far ahead of the others (a clock offset) is no restart for the others
    sync = ApproximateSynchronizer(2, slop_ns=5 * MS)
    sync.add(0, 10_000 * MS, "ahead")
    ev = sync.add(1, 100 * MS, "normal")
    assert not ev.reset and sync.resets == 0
    assert not sync.add(1, 0, "x").reset  # 100 ms back on its own stream: no restart either
    sync.add(1, 5_000 * MS, "y")
    assert sync.add(1, 1_000 * MS, "back").reset  # 4 s back on its own stream
