"""Time and state at run time, against node processes: a bag restarting (stamps jump back),
camera resolution and intrinsics changing, and lazy mode (no subscribers, no inference)."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from bore_depth_ros.core import messages as msgs
from bore_depth_ros.testing.rig_load import RigLoad
from bore_depth_ros_msgs.msg import RigConfidence
from harness import NodeProcess, entry_point, make_test_image, spin_until, start_in_namespace, write_params
from ros_clients import DepthProbe, camera_info, encode_image, image_msg

FRAME = "cam_optical_frame"


def test_bag_restart_resets_sync_and_tf_caches_with_one_log_line(ros, tmp_path):
    """Sets at t = 100 s, then the 'bag' starts over at t = 10 s. The front camera's pose comes
    from /tf (a moving mount): without clearing the dynamic TF cache, the 10 s samples would be
    older than the 30 s cache window behind 100 s and the fused cloud would stop."""
    ns = "/restart"
    node = start_in_namespace(
        tmp_path,
        "bore-depth-surround-node",
        ns,
        model="svr",
        input_height=64,
        input_width=96,
        diagnostics_period=0.2,
        slop=0.01,
    )
    load = RigLoad(ns, height=60, width=96, name="restart_load", moving_mounts=("front",))
    rig: dict[int, RigConfidence] = {}
    load.create_subscription(
        RigConfidence,
        f"{ns}/rig_confidence",
        lambda m: rig.__setitem__(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, m),
        50,
    )
    ex = SingleThreadedExecutor()
    ex.add_node(load)
    try:
        assert spin_until(ex, load.connected, 30)

        def run(t_ns):
            for _ in range(5):  # best-effort input: resend a set that produced nothing
                load.publish_set(t_ns)
                if spin_until(ex, lambda: t_ns in rig, 15):
                    return rig[t_ns]
            raise AssertionError(f"no output for {t_ns}: {node.output()[-3000:]}")

        # /tf_static is latched but may reach the node after the first images: wait for it
        for k in range(10):
            if run(99 * 10**9 + k * 10**7).fused:
                break
        else:
            raise AssertionError(f"never fused: {node.output()[-3000:]}")
        first = [run(100 * 10**9 + k * 10**8) for k in range(3)]
        assert all(r.fused for r in first), [r.fusion_status for r in first]
        again = [run(10 * 10**9 + k * 10**8) for k in range(3)]
        assert all(r.fused and r.fusion_status == "ok" for r in again), [r.fusion_status for r in again]
        log = node.output()
        assert log.count("jumped back") == 1, log
        line = next(x for x in log.splitlines() if "jumped back" in x)
        assert "reset synchronisation" in line and "TF cache" in line
        assert "Traceback" not in log
    finally:
        ex.remove_node(load)
        load.destroy_node()
        node.stop()


def test_resolution_and_intrinsics_change_at_run_time(ros, tmp_path, structured_weights):
    ns = "/reschange"
    node = start_in_namespace(
        tmp_path,
        "bore-depth-mono-node",
        ns,
        weights=structured_weights,
        input_height=64,
        input_width=96,
        diagnostics_period=0.2,
    )
    probe = DepthProbe(ns, name="res_probe")
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    try:
        assert spin_until(ex, probe.connected, 30)

        def send(sec, w, h, fx, cx, cy, attempts=5):
            stamp = Time(sec=sec)
            data, step = encode_image(make_test_image(h, w, seed=sec), "rgb8")
            for _ in range(attempts):
                probe.publish(
                    image_msg(data, w, h, step, "rgb8", FRAME, stamp),
                    camera_info(w, h, FRAME, fx, fx, cx, cy, stamp),
                )
                if spin_until(ex, lambda: probe.complete(stamp), 10):
                    return probe.received[(sec, 0)]
            raise AssertionError(node.output()[-3000:])

        a = send(1, 80, 60, 70.0, 39.5, 29.5)
        b = send(2, 160, 120, 140.0, 79.5, 59.5)  # the driver switched resolution
        c = send(3, 160, 120, 150.0, 80.0, 60.0)  # ...and was re-calibrated
        for out, (w, h, fx) in ((a, (80, 60, 70.0)), (b, (160, 120, 140.0)), (c, (160, 120, 150.0))):
            depth = msgs.image_array(out["depth/image"])
            info = out["depth/camera_info"]
            assert depth.shape == (h, w) and (info.width, info.height) == (w, h)
            assert info.k[0] == pytest.approx(fx) and info.p[0] == pytest.approx(fx)
            assert np.isfinite(depth).any()
            assert out["points"].width == w and out["points"].height == h
        log = node.output()
        assert log.count("camera resolution 80x60 -> 160x120") == 1, log
        assert log.count("camera intrinsics fx,fy,cx,cy") == 1, log
        # a bag restarting: stamps jump back, one log line, the frame is still served
        send(1000, 160, 120, 150.0, 80.0, 60.0)
        probe.received.clear()
        # served at the first attempt: the camera_info that came with it (served first, and
        # what revealed the restart) must survive the reset
        send(4, 160, 120, 150.0, 80.0, 60.0, attempts=1)
        assert node.output().count("jumped back") == 1, node.output()
        v = probe.latest_diagnostic_values(ns + "/bore_depth_mono")
        assert spin_until(
            ex, lambda: probe.latest_diagnostic_values(ns + "/bore_depth_mono").get("frames_out") == "5", 10
        ), v
    finally:
        ex.remove_node(probe)
        probe.destroy_node()
        node.stop()


def test_lazy_mode_skips_inference_without_subscribers_and_says_so(ros, tmp_path, structured_weights):
    ns = "/lazycam"
    name = ns + "/bore_depth_mono"
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
    camera = rclpy.create_node("lazy_camera")  # a camera driver: publishes, subscribes to nothing
    pub_img = camera.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    pub_info = camera.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
    diags: list = []
    camera.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: diags.extend(s for s in m.status if name in s.name), 50
    )
    ex = SingleThreadedExecutor()
    ex.add_node(camera)
    rgb = make_test_image(60, 80, seed=4)
    data, step = encode_image(rgb, "rgb8")

    def publish(sec):
        stamp = Time(sec=sec)
        pub_info.publish(camera_info(80, 60, FRAME, 70.0, 70.0, 39.5, 29.5, stamp))
        pub_img.publish(image_msg(data, 80, 60, step, "rgb8", FRAME, stamp))

    def values():
        return {kv.key: kv.value for kv in diags[-1].values} if diags else {}

    probe = None
    try:
        assert spin_until(ex, lambda: pub_img.get_subscription_count() > 0, 30)
        for sec in range(1, 6):
            publish(sec)
            spin_until(ex, lambda: False, 0.2)
        assert spin_until(ex, lambda: int(values().get("skipped.no_subscribers", 0)) >= 3, 10), values()
        v = values()
        assert v["idle_no_subscribers"] == "True" and v["frames_out"] == "0", v
        assert "idle: lazy mode" in diags[-1].message
        # a subscriber appears (rviz opens): inference resumes
        probe = DepthProbe(ns, name="lazy_viewer")
        ex.add_node(probe)
        assert spin_until(ex, probe.connected, 30)
        for sec in range(10, 30):
            publish(sec)
            if spin_until(ex, lambda sec=sec: probe.complete(Time(sec=sec)), 2):
                break
        else:
            raise AssertionError(node.output())
        assert spin_until(ex, lambda: values().get("idle_no_subscribers") == "False", 10)
        log = node.output()
        assert log.count("lazy mode: no subscribers") == 1 and "inference resumed" in log, log
    finally:
        if probe is not None:
            ex.remove_node(probe)
            probe.destroy_node()
        ex.remove_node(camera)
        camera.destroy_node()
        node.stop()


def test_diagnostics_say_why_nothing_comes_out(ros, tmp_path, structured_weights):
    """The classic complaint, 'topics exist but nothing is published': a mistyped remap."""
    pfile = write_params(
        tmp_path / "typo.yaml",
        dict(weights=structured_weights, input_height=64, input_width=96, diagnostics_period=0.2),
    )
    node = NodeProcess(
        [
            entry_point("bore-depth-mono-node"),
            "--ros-args",
            "--params-file",
            str(pfile),
            "-r",
            "__ns:=/typo",
            "-r",
            "image:=/camera/imgae_rect",
        ],
        tmp_path / "typo.log",
    )
    listener = rclpy.create_node("typo_listener")
    got: list = []
    listener.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: got.extend(s for s in m.status if "/typo/" in s.name), 10
    )
    ex = SingleThreadedExecutor()
    ex.add_node(listener)
    try:
        assert node.wait_for_output("ready:", 120), node.output()
        assert spin_until(ex, lambda: bool(got), 20)
        assert got[-1].message == (
            "no messages yet on /camera/imgae_rect: nobody publishes it (check remapping/namespace)"
        ), got[-1].message
    finally:
        ex.remove_node(listener)
        listener.destroy_node()
        node.stop()
