"""Per-output laziness, against node processes: with ``lazy: true`` a point cloud nobody
subscribes to is not built (counted as ``not_built_lazy.*`` in /diagnostics); the other outputs
keep flowing, and the cloud comes back as soon as somebody subscribes to it."""

from __future__ import annotations

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from bore_depth_ros.testing.rig_load import RigLoad
from harness import make_test_image, spin_until, start_in_namespace
from ros_clients import camera_info, encode_image, image_msg

FRAME = "cam_optical_frame"
RELIABLE = QoSProfile(depth=20, reliability=QoSReliabilityPolicy.RELIABLE)


def test_mono_builds_the_cloud_only_for_subscribers(ros, tmp_path, structured_weights):
    ns = "/lazyout"
    node = start_in_namespace(
        tmp_path,
        "bore-depth-mono-node",
        ns,
        weights=structured_weights,
        lazy=True,
        input_height=64,
        input_width=96,
        diagnostics_period=0.2,
    )
    client = rclpy.create_node("lazy_depth_viewer")
    pub_img = client.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    pub_info = client.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
    depths: list = []
    clouds: list = []
    diag: dict = {}
    client.create_subscription(Image, f"{ns}/depth/image", depths.append, RELIABLE)

    def on_diag(m):
        for s in m.status:
            if s.name.startswith(ns + "/bore_depth_mono"):
                diag.update({kv.key: kv.value for kv in s.values})

    client.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    data, step = encode_image(make_test_image(60, 80, seed=2), "rgb8")

    def publish(sec):
        stamp = Time(sec=sec)
        pub_info.publish(camera_info(80, 60, FRAME, 70.0, 70.0, 39.5, 29.5, stamp))
        pub_img.publish(image_msg(data, 80, 60, step, "rgb8", FRAME, stamp))

    try:
        assert spin_until(ex, lambda: pub_img.get_subscription_count() > 0, 30)
        # only depth/image is watched: depth flows, the cloud is not built
        for sec in range(1, 30):
            publish(sec)
            if spin_until(ex, lambda: len(depths) >= 3, 1.0):
                break
        assert len(depths) >= 3, node.output()[-3000:]
        assert spin_until(ex, lambda: int(diag.get("not_built_lazy.points", 0)) >= 3, 10), diag
        assert diag["idle_no_subscribers"] == "False"
        # a subscriber to points appears (rviz adds a PointCloud2 display): clouds come back
        client.create_subscription(PointCloud2, f"{ns}/points", clouds.append, RELIABLE)
        for sec in range(30, 60):
            publish(sec)
            if spin_until(ex, lambda: bool(clouds), 1.0):
                break
        assert clouds, node.output()[-3000:]
        assert clouds[-1].header.frame_id == FRAME and clouds[-1].width == 80
        assert "Traceback" not in node.output()
    finally:
        ex.remove_node(client)
        client.destroy_node()
        node.stop()


def test_surround_fuses_only_for_subscribers(ros, tmp_path):
    """Only rig_confidence is watched: no per-view cloud and no fused cloud is built, the summary
    says why; a subscriber to the fused ``points`` brings fusion back."""
    ns = "/lazyrig"
    node = start_in_namespace(
        tmp_path,
        "bore-depth-surround-node",
        ns,
        model="svr",
        input_height=64,
        input_width=96,
        diagnostics_period=0.2,
        lazy=True,
    )
    load = RigLoad(ns, height=60, width=96, name="lazy_rig_load")
    fused: list = []
    ex = SingleThreadedExecutor()
    ex.add_node(load)
    try:
        assert spin_until(ex, load.connected, 30)
        k = 0

        def run_until(pred, timeout=60.0):
            nonlocal k
            for _ in range(int(timeout)):
                k += 1
                load.publish_set(100 * 10**9 + k * 10**8)
                if spin_until(ex, pred, 1.0):
                    return True
            return False

        assert run_until(lambda: len(load.rig_msgs) >= 2), node.output()[-3000:]
        last = load.rig_msgs[-1]
        assert not last.fused and "nobody subscribes to points" in last.fusion_status, last
        assert len(last.views) == 6
        assert spin_until(
            ex, lambda: int(load.rig_values().get("not_built_lazy.fused_points", 0)) >= 2, 10
        ), load.rig_values()
        assert int(load.rig_values()["not_built_lazy.points"]) >= 12
        load.create_subscription(PointCloud2, f"{ns}/points", fused.append, RELIABLE)
        assert run_until(lambda: bool(fused) and load.rig_msgs[-1].fused), node.output()[-3000:]
        assert fused[-1].header.frame_id == "base_link" and fused[-1].width > 0
        assert load.rig_msgs[-1].fusion_status == "ok"
        assert "Traceback" not in node.output()
    finally:
        ex.remove_node(load)
        load.destroy_node()
        node.stop()
