"""Rig geometry with exact ground truth: fused cloud and cross-view consistency."""

import numpy as np

from bore_depth_ros.core.fusion import fuse_views, pack_unorganized, view_consistency
from bore_depth_ros.sim.procedural import Scene, render
from bore_depth_ros.sim.rig import RING_ORDER, SURROUND_RIG

W, H = 128, 80
RIG = {c.name: c for c in SURROUND_RIG}


def rendered_rig(scene=None):
    scene = scene if scene is not None else Scene()
    views = {}
    for cam in SURROUND_RIG:
        tf = cam.base_from_optical()  # base_link == world here (vehicle at the origin)
        rgb, depth = render(scene, cam.intrinsics(W, H), tf.translation, tf.rotation)
        views[cam.name] = (rgb, depth, cam.intrinsics(W, H), tf)
    return views


def test_fused_ground_truth_lies_on_the_ground_plane_in_base_link():
    views = rendered_rig()
    names = list(views)
    cloud = fuse_views(
        [views[n][1] for n in names],
        [views[n][2] for n in names],
        [views[n][3] for n in names],
        stride=2,
        max_range=30.0,
        colors=[views[n][0] for n in names],
    )
    assert all(c > 100 for c in cloud.points_per_view), cloud.points_per_view
    assert np.abs(cloud.xyz[:, 2]).max() < 1e-3  # only the ground was rendered
    assert (np.linalg.norm(cloud.xyz, axis=1) <= 30.0 + 1e-3).all()
    # the fused cloud covers all directions around the vehicle
    angles = np.degrees(np.arctan2(cloud.xyz[:, 1], cloud.xyz[:, 0]))
    hist, _ = np.histogram(angles, bins=12, range=(-180, 180))
    assert (hist > 0).all(), hist
    packed = pack_unorganized(cloud)
    fields, step, data = packed.fields, packed.point_step, packed.data
    assert step == 16 and [f[0] for f in fields] == ["x", "y", "z", "rgb"]
    assert data.size == len(cloud.xyz) * 16
    np.testing.assert_array_equal(data.view("<f4").reshape(-1, 4)[:, :3], cloud.xyz)


def test_ground_truth_is_consistent_across_adjacent_views_and_a_wrong_extrinsic_is_not():
    views = rendered_rig(Scene.street(4))
    for a, b in zip(RING_ORDER, RING_ORDER[1:] + RING_ORDER[:1]):
        _, da, ia, ta = views[a]
        _, db, ib, tb = views[b]
        ov = view_consistency(da, ia, db, ib, tb.inverse() @ ta, stride=1)
        assert ov.n_points > 50, (a, b, ov)
        assert ov.median_rel_diff < 0.02, (a, b, ov)
    # a 5 degree yaw error in one extrinsic shows up as inconsistency
    from bore_depth_ros.core.transforms import Transform, rotation_z

    _, da, ia, ta = views["front"]
    _, db, ib, tb = views["front_left"]
    wrong = Transform(rotation_z(np.deg2rad(5)) @ tb.rotation, tb.translation)
    bad = view_consistency(da, ia, db, ib, wrong.inverse() @ ta, stride=1)
    good = view_consistency(da, ia, db, ib, tb.inverse() @ ta, stride=1)
    assert bad.median_rel_diff > 3 * good.median_rel_diff
