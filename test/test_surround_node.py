"""The surround node in its own process over real ROS 2: a six-camera recording played into it,
per-view and fused outputs, the geometry path with ground truth, and missing TF."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2

from bore_depth_ros.bag.messages import BAG, TYPESTORE
from bore_depth_ros.bag.reader import FrameSync, discover_cameras, open_bag, read_tf
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.fusion import fuse_views, view_consistency
from bore_depth_ros.core.transforms import Transform
from bore_depth_ros.ros import conversions as conv
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.sim.rig import RING_ORDER, SURROUND_RIG
from bore_depth_ros.testing.probe import DepthProbe
from bore_depth_ros_msgs.msg import RigConfidence
from harness import NodeProcess, entry_point, spin_until, write_params

W, H = 96, 64
FRAMES = 3
RELIABLE = QoSProfile(depth=20, reliability=QoSReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rig") / "six"
    record(
        path,
        RecordingConfig(rig="surround", frames=FRAMES, width=W, height=H, seed=3, rate_hz=2.0),
        progress=False,
    )
    with open_bag(path) as reader:
        cams = discover_cameras(reader)
        frames = list(FrameSync(reader, cams))
        tf = read_tf(reader)
    return path, frames, tf


def start_surround(tmp_path, name: str, **overrides) -> NodeProcess:
    params = dict(
        model="svr",
        backend="onnxruntime",
        input_height=64,
        input_width=96,
        points_decimation=2,
        fused_decimation=2,
        fused_max_range=200.0,
        consistency_decimation=2,
        diagnostics_period=0.2,
        slop=0.01,
    )
    params.update(overrides)
    pfile = write_params(tmp_path / f"{name}.yaml", params)
    node = NodeProcess(
        [
            entry_point("bore-depth-surround-node"),
            "--ros-args",
            "--params-file",
            str(pfile),
            "-r",
            "__ns:=/cameras",
        ],
        tmp_path / f"{name}.log",
    )
    assert node.wait_for_output("ready:", 180), node.output()
    return node


class RigListener:
    def __init__(self):
        self.node = rclpy.create_node("rig_listener")
        self.views: dict[tuple[str, int], dict] = {}
        self.fused: dict[int, PointCloud2] = {}
        self.rig: dict[int, RigConfidence] = {}
        for cam in RING_ORDER:
            for topic, typ in (("depth/image", Image), ("points", PointCloud2)):
                self.node.create_subscription(
                    typ,
                    f"/cameras/{cam}/{topic}",
                    lambda m, c=cam, t=topic: self.views.setdefault(
                        (c, msgs.stamp_ns(m.header)), {}
                    ).__setitem__(t, m),
                    RELIABLE,
                )
        self.node.create_subscription(
            PointCloud2,
            "/cameras/points",
            lambda m: self.fused.__setitem__(msgs.stamp_ns(m.header), m),
            RELIABLE,
        )
        self.node.create_subscription(
            RigConfidence,
            "/cameras/rig_confidence",
            lambda m: self.rig.__setitem__(msgs.stamp_ns(m.header), m),
            RELIABLE,
        )
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)

    def close(self):
        self.ex.remove_node(self.node)
        self.node.destroy_node()


def test_recording_played_into_the_surround_node(ros, tmp_path, recording):
    bag, frames, tf = recording
    stamps = sorted({f.stamp_ns for f in frames})
    node = start_surround(tmp_path, "play", use_sim_time=True)
    listen = RigListener()
    player = None
    try:
        assert spin_until(listen.ex, lambda: listen.node.count_publishers("/cameras/points") > 0, 30)
        player = NodeProcess(
            [
                entry_point("bore-depth"),
                "play",
                str(bag),
                "--rate",
                "0.25",
                "--no-progress",
                "--wait-for",
                *[f"/cameras/{c}/image" for c in RING_ORDER],
                "/tf_static",
            ],
            tmp_path / "player.log",
        )
        assert spin_until(listen.ex, lambda: len(listen.rig) == FRAMES, 120), (
            sorted(listen.rig),
            stamps,
            node.output()[-3000:],
        )
        assert sorted(listen.rig) == stamps  # the rig's stamp is the newest input's
        by_key = {(f.camera.namespace.split("/")[-1], f.stamp_ns): f for f in frames}
        for (cam, t), outs in listen.views.items():
            src = by_key[(cam, t)].image
            for msg in outs.values():  # headers copied from the input image
                assert msgs.stamp_ns(msg.header) == t
                assert msg.header.frame_id == src.header.frame_id
        assert len(listen.views) == FRAMES * 6 and all(len(v) == 2 for v in listen.views.values())
        for t in stamps:
            rig = listen.rig[t]
            assert rig.fused and rig.fusion_status == "ok" and len(rig.views) == 6
            assert [v.camera_frame for v in rig.views] == [f"camera_{c}_optical_frame" for c in RING_ORDER]
            fused = listen.fused[t]
            assert fused.header.frame_id == "base_link" and fused.height == 1
            # the node's fused cloud equals an independent fusion of its own per-view depth
            # through the bag's /tf_static
            cams = [c for c in RING_ORDER]
            depths = [msgs.image_array(listen.views[(c, t)]["depth/image"]) for c in cams]
            intrs = [msgs.intrinsics(by_key[(c, t)].camera_info) for c in cams]
            tfs = [tf.lookup("base_link", f"camera_{c}_optical_frame", t) for c in cams]
            ref = fuse_views(depths, intrs, tfs, stride=2, min_range=0.3, max_range=200.0)
            got = msgs.cloud_fields(fused)  # the one cloud reader reads rclpy messages too
            assert got.shape == ref.xyz.shape
            np.testing.assert_allclose(got, ref.xyz, rtol=1e-5, atol=1e-4)
            # each ring neighbour pair's consistency, as an independent check of the node's
            # per-view depth through the same TF gives it (how many points overlap depends on
            # the predicted depth, so only the rig as a whole must show some)
            assert len(rig.overlaps) == 6
            for k, o in enumerate(rig.overlaps):
                a, b = k, (k + 1) % 6
                assert (o.camera_a, o.camera_b) == (rig.views[a].camera_frame, rig.views[b].camera_frame)
                ov = view_consistency(depths[a], intrs[a], depths[b], intrs[b], tfs[b].inverse() @ tfs[a], 2)
                assert o.n_points == ov.n_points
                np.testing.assert_allclose(o.overlap_fraction, ov.overlap_fraction, rtol=1e-6)
            assert any(o.n_points > 0 for o in rig.overlaps)
        player.proc.wait(timeout=60)
        assert player.proc.returncode == 0, player.output()
    finally:
        listen.close()
        if player is not None:
            player.stop()
        node.stop()


def test_ground_truth_through_the_fusion_path_matches_the_scene(recording):
    """The node's geometry path (camera_info + /tf_static + fuse_views) applied to ground-truth
    depth reproduces the rendered scene: ground points lie on z = 0 in base_link and every point
    lies on the surface a ray cast in the pybullet scene hits."""
    import pybullet as p

    from bore_depth_ros.sim.pybullet_scene import PybulletWorld
    from bore_depth_ros.sim.recording import ego_pose, scene_for

    bag, frames, tf = recording
    t0 = min(f.stamp_ns for f in frames)
    first = [f for f in frames if f.stamp_ns == t0]
    cfg = RecordingConfig(rig="surround", frames=FRAMES, width=W, height=H, seed=3, rate_hz=2.0)
    depths, intrs, tfs, labels = [], [], [], []
    with open_bag(bag) as reader:
        sem = {}
        for conn, _, raw in reader.messages():
            if conn.topic.endswith("/semantic/image"):
                msg = reader.deserialize(raw, conn.msgtype)
                sem[(conn.topic.split("/")[2], msgs.stamp_ns(msg.header))] = msgs.image_array(msg).copy()
    for f in first:
        cam = f.camera.namespace.split("/")[-1]
        depths.append(msgs.image_array(f.depth_gt).astype(np.float32))
        intrs.append(msgs.intrinsics(f.camera_info))
        tfs.append(tf.lookup("base_link", f.image.header.frame_id, t0))
        labels.append(sem[(cam, t0)])
    cloud = fuse_views(
        depths,
        intrs,
        tfs,
        stride=1,
        max_range=60.0,
        colors=[np.repeat(lb[..., None], 3, -1) for lb in labels],
    )
    cls = (cloud.rgb.view(np.uint32) & 255).astype(np.int64)
    ground = cls == 1
    assert ground.sum() > 500 and (~ground).sum() > 500
    assert np.abs(cloud.xyz[ground, 2]).max() < 0.01  # flat road at z = 0 (cm)
    # ray casts from each camera to its points hit the scene exactly there
    world_from_base = ego_pose((t0 - cfg.start_time_ns) / 1e9, cfg)
    with PybulletWorld(scene_for(cfg)) as world:
        errors = []
        start = 0
        for n_pts, tfo in zip(cloud.points_per_view, tfs):
            pts = world_from_base.apply(cloud.xyz[start : start + n_pts].astype(np.float64))
            start += n_pts
            origin = world_from_base.apply(tfo.translation[None])[0]
            sel = pts[:: max(1, n_pts // 400)]
            far = origin + (sel - origin) * 1.05
            hits = p.rayTestBatch([origin.tolist()] * len(sel), far.tolist(), physicsClientId=world.client)
            hit_pos = np.array([h[3] for h in hits])
            ok = np.array([h[0] >= 0 for h in hits])
            errors.append(np.linalg.norm(hit_pos[ok] - sel[ok], axis=1))
        err = np.concatenate(errors)
    assert err.size > 1000
    assert np.median(err) < 0.02 and np.percentile(err, 95) < 0.10, (np.median(err), np.percentile(err, 95))


class RigFeed:
    """A surround node under test, fed set by set from the recording by one probe per camera,
    with a /tf_static publisher (latched) the test controls."""

    def __init__(self, tmp_path, recording, name: str):
        _, frames, _ = recording
        self.node = start_surround(tmp_path, name)
        self.listen = RigListener()
        self.probes = {
            c: DepthProbe(f"/cameras/{c}", name=f"probe_{c}", outputs={"depth/image": Image})
            for c in RING_ORDER
        }
        self.tf_pub = self.listen.node.create_publisher(
            __import__("tf2_msgs.msg", fromlist=["TFMessage"]).TFMessage,
            "/tf_static",
            QoSProfile(
                depth=10,
                reliability=QoSReliabilityPolicy.RELIABLE,
                durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
            ),
        )
        for pr in self.probes.values():
            self.listen.ex.add_node(pr)
        self.by_t: dict[int, list] = {}
        for f in frames:
            self.by_t.setdefault(f.stamp_ns, []).append(f)
        self.stamps = sorted(self.by_t)

    def publish_set(self, t):
        for f in self.by_t[t]:
            cam = f.camera.namespace.split("/")[-1]
            self.probes[cam].publish(
                conv.from_cdr(TYPESTORE.serialize_cdr(f.image, msgs.IMAGE), msgs.IMAGE),
                conv.from_cdr(TYPESTORE.serialize_cdr(f.camera_info, msgs.CAMERA_INFO), msgs.CAMERA_INFO),
            )

    def send_set(self, t, timeout: float = 120.0) -> bool:
        """Publish the set of stamp ``t`` until the rig summary of that stamp arrives (inputs are
        best effort, and a node from an earlier test may still hold the names for a moment)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish_set(t)
            if spin_until(self.listen.ex, lambda: t in self.listen.rig, min(5.0, timeout)):
                return True
        return False

    def publish_tf_static(self, t, transforms):
        self.tf_pub.publish(
            conv.from_cdr(
                TYPESTORE.serialize_cdr(BAG.tf_message(transforms), msgs.TF_MESSAGE), msgs.TF_MESSAGE
            )
        )

    def rig_diag(self) -> dict:
        for p in self.probes.values():
            v = p.latest_diagnostic_values("bore_depth_surround: rig")
            if v:
                return v
        return {}

    def close(self):
        for pr in self.probes.values():
            self.listen.ex.remove_node(pr)
            pr.destroy_node()
        self.listen.close()
        self.node.stop()


def _rig_transforms(t, nan_camera: str | None = None):
    out = []
    for c in SURROUND_RIG:
        tf = c.base_from_optical()
        if c.name == nan_camera:
            tf = Transform(tf.rotation, np.array([np.nan, 0.0, 1.5]))
        out.append(BAG.transform_stamped(BAG.header(t, "base_link"), c.optical_frame, tf))
    return out


def test_missing_tf_keeps_views_flowing_and_fusion_resumes(ros, tmp_path, recording):
    rf = RigFeed(tmp_path, recording, "notf")
    node, listen, probes, stamps = rf.node, rf.listen, rf.probes, rf.stamps
    try:
        assert spin_until(listen.ex, lambda: all(p.connected() for p in probes.values()), 30)
        # 1. no TF at all: every view is still published, the rig says why nothing is fused
        assert rf.send_set(stamps[0]), node.output()[-2000:]
        rig = listen.rig[stamps[0]]
        assert not rig.fused and "waiting for TF" in rig.fusion_status
        assert "camera_front_optical_frame" in rig.fusion_status or "base_link" in rig.fusion_status
        assert spin_until(
            listen.ex, lambda: all(probes[c].complete(_stamp(stamps[0])) for c in RING_ORDER), 20
        )
        assert stamps[0] not in listen.fused
        assert "fused cloud waits for TF" in node.output()

        def diag_warns():
            return any(
                "waiting for TF"
                in (p.latest_diagnostic_values("bore_depth_surround: rig").get("fusion_status", ""))
                for p in probes.values()
            )

        assert spin_until(listen.ex, diag_warns, 20)
        # 2. /tf_static arrives (latched): fusion resumes with the next set
        rf.publish_tf_static(stamps[0], _rig_transforms(stamps[0]))
        assert rf.send_set(stamps[1]), node.output()[-2000:]
        assert spin_until(listen.ex, lambda: stamps[1] in listen.fused and stamps[1] in listen.rig, 120), (
            node.output()[-2000:]
        )
        assert listen.rig[stamps[1]].fused and listen.rig[stamps[1]].fusion_status == "ok"
        assert "fused cloud resumed" in node.output()
    finally:
        rf.close()


def test_nan_translation_on_tf_static_is_rejected(ros, tmp_path, recording):
    """A camera mount with a NaN translation is rejected and counted, never fused (its points
    would vanish while fusion reported ok); a valid one for that camera lets fusion resume."""
    rf = RigFeed(tmp_path, recording, "nantf")
    try:
        assert spin_until(rf.listen.ex, lambda: all(p.connected() for p in rf.probes.values()), 30)
        t0, t1 = rf.stamps[0], rf.stamps[1]
        rf.publish_tf_static(t0, _rig_transforms(t0, nan_camera="back"))
        assert rf.send_set(t0), rf.node.output()[-2000:]
        rig = rf.listen.rig[t0]
        assert not rig.fused and "camera_back_optical_frame" in rig.fusion_status, rig.fusion_status
        assert t0 not in rf.listen.fused
        assert spin_until(
            rf.listen.ex, lambda: int(rf.rig_diag().get("tf_failures.invalid_transform", 0)) >= 1, 20
        ), rf.rig_diag()
        assert "ignored transform base_link -> camera_back_optical_frame" in rf.node.output()
        assert "non-finite" in rf.node.output()
        rf.publish_tf_static(t0, _rig_transforms(t0))
        assert rf.send_set(t1)
        assert spin_until(rf.listen.ex, lambda: t1 in rf.listen.fused, 20)
        assert rf.listen.rig[t1].fused
    finally:
        rf.close()


def _stamp(t_ns):
    from builtin_interfaces.msg import Time

    return Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)
