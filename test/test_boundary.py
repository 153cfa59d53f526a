"""Depth-boundary metric on hand-made arrays with hand-computed answers."""

import math

import numpy as np
import pytest

from bore_depth_ros.core.boundary import boundary_metrics, depth_edges, dilate, distance_transform


def step(h=8, w=10, col=5, near=2.0, far=4.0):
    """Columns < col at ``near``, the rest at ``far``: the edge pixel is column col - 1."""
    d = np.full((h, w), far)
    d[:, :col] = near
    return d


def test_edges_mark_the_nearer_pixel_of_each_jump():
    e = depth_edges(step())
    assert e.sum() == 8 and e[:, 4].all()
    # a far-to-near step going down the rows marks the lower (nearer) row
    d = np.full((8, 6), 10.0)
    d[4:] = 5.0
    e = depth_edges(d)
    assert e[4].all() and e.sum() == 6


def test_edge_threshold_is_a_relative_jump():
    d = step(near=2.0, far=2.08)  # a 4 % jump
    assert not depth_edges(d, threshold=0.05).any()
    assert depth_edges(d, threshold=0.03)[:, 4].all()
    # scale free: the same map in other units has the same edges
    assert np.array_equal(depth_edges(step() * 7.3), depth_edges(step()))


def test_edges_need_both_neighbours_valid():
    d = step(far=np.inf)  # object against the sky
    assert not depth_edges(d).any()
    d = step()
    d[:, 5] = np.nan
    assert not depth_edges(d).any()
    mask = np.ones(d.shape, bool)
    mask[:4] = False
    assert depth_edges(step(), mask=mask).sum() == 4


def test_step_shifted_by_one_pixel():
    gt, pred = step(col=5), step(col=6)  # GT edge at column 4, predicted at column 5
    m = boundary_metrics(pred, gt, radius=1)
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)
    assert (m["n_pred"], m["n_gt"], m["matched_pred"], m["matched_gt"]) == (8, 8, 8, 8)
    assert m["dbe_acc"] == 1.0 and m["dbe_comp"] == 1.0
    m0 = boundary_metrics(pred, gt, radius=0)
    assert (m0["precision"], m0["recall"], m0["f1"]) == (0.0, 0.0, 0.0)
    m2 = boundary_metrics(step(col=7), gt, radius=1)  # two pixels away
    assert m2["f1"] == 0.0 and m2["dbe_acc"] == 2.0
    assert boundary_metrics(step(col=7), gt, radius=2)["f1"] == 1.0


def test_perfect_and_edgeless_predictions():
    gt = step()
    m = boundary_metrics(gt * 3.0, gt)  # any scale: edges are relative
    assert (m["precision"], m["recall"], m["f1"], m["dbe_acc"], m["dbe_comp"]) == (1.0, 1.0, 1.0, 0.0, 0.0)
    flat = boundary_metrics(np.full(gt.shape, 3.0), gt)
    assert math.isnan(flat["precision"]) and flat["recall"] == 0.0 and flat["f1"] == 0.0
    assert flat["dbe_acc"] == 10.0 and flat["dbe_comp"] == 10.0  # the iBims-1 cap
    none = boundary_metrics(np.ones((4, 4)), np.ones((4, 4)))
    assert math.isnan(none["f1"]) and math.isnan(none["dbe_acc"])


def test_spurious_far_edge_costs_precision_not_accuracy():
    gt = step(h=16, w=30, col=5)
    pred = gt.copy()
    pred[:, 25:] = 8.0  # an extra step 20 px from the true one
    m = boundary_metrics(pred, gt, radius=1)
    assert m["n_pred"] == 32 and m["matched_pred"] == 16
    assert m["precision"] == 0.5 and m["recall"] == 1.0 and m["f1"] == pytest.approx(2 / 3)
    assert m["dbe_acc"] == 0.0  # edges beyond 10 px are left out of the accuracy
    assert m["dbe_comp"] == 0.0


def test_distance_transform_hand_values_and_brute_force():
    f = np.zeros((5, 6), bool)
    f[2, 3] = True
    d = distance_transform(f)
    assert (
        d[2, 3] == 0.0
        and d[0, 0] == pytest.approx(math.sqrt(4 + 9))
        and d[4, 5] == pytest.approx(math.sqrt(8))
    )
    assert np.isinf(distance_transform(np.zeros((3, 4), bool))).all()
    rng = np.random.default_rng(1)
    for _ in range(30):
        h, w = rng.integers(1, 25, 2)
        f = rng.random((h, w)) < rng.choice([0.02, 0.1, 0.4])
        if not f.any():
            continue
        ys, xs = np.nonzero(f)
        yy, xx = np.mgrid[:h, :w]
        brute = np.sqrt(((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(-1))
        np.testing.assert_allclose(distance_transform(f), brute, atol=1e-9)
        for r in (0, 1, 1.5, 3):
            assert np.array_equal(dilate(f, r), brute <= r)


def test_dilation_shapes():
    f = np.zeros((5, 5), bool)
    f[2, 2] = True
    plus = dilate(f, 1)
    assert plus.sum() == 5 and plus[1, 2] and plus[2, 1] and not plus[1, 1]
    assert dilate(f, 1.5).sum() == 9
    assert np.array_equal(dilate(f, 0), f)
