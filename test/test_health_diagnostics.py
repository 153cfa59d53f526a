"""/diagnostics describe the node's health now, and graph problems are warned about once.

One mono node process; this process publishes its input and reads ``/diagnostics``:
a transient overload shows as WARN and clears once it stops; a silent input goes STALE naming the
topic; zero stamps and stamps far from the clock are warned about once; a second publisher on the
image topic and a second node with the node's name are named in the log (once) and shown as WARN.
"""

from __future__ import annotations

import time

import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from harness import make_test_image, spin_until
from ros_clients import DepthProbe, camera_info, encode_image, image_msg
from test_mono_node import CX, CY, FRAME, FX, FY, H, W, start_node

NS = "/health"
OK, WARN, STALE = 0, 1, 3
WINDOW = 2.0


class Feed:
    def __init__(self, probe: DepthProbe, ex):
        self.probe, self.ex = probe, ex
        data, step = encode_image(make_test_image(H, W, seed=4), "rgb8")
        self.data, self.step = data, step

    def frame(self, stamp: Time) -> None:
        self.probe.pub_info.publish(camera_info(W, H, FRAME, FX, FY, CX, CY, stamp))
        self.probe.pub_image.publish(image_msg(self.data, W, H, self.step, "rgb8", FRAME, stamp))

    def run(self, seconds: float, rate_hz: float, stamp=None) -> None:
        t_next = time.monotonic()
        end = t_next + seconds
        while time.monotonic() < end:
            now = time.time_ns()
            self.frame(stamp if stamp is not None else Time(sec=now // 10**9, nanosec=now % 10**9))
            t_next += 1.0 / rate_hz
            while (left := t_next - time.monotonic()) > 0:
                self.ex.spin_once(timeout_sec=min(left, 0.02))

    def status(self) -> tuple[int, str]:
        for arr in reversed(self.probe.diagnostics):
            for st in arr.status:
                if st.name.startswith(f"{NS}/bore_depth_mono"):
                    return ord(st.level), st.message
        return -1, ""

    def settle(self, seconds: float) -> tuple[int, str]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.05)
        self.probe.diagnostics.clear()
        assert spin_until(self.ex, lambda: self.status()[0] >= 0, 5)
        return self.status()


def test_levels_follow_current_health_and_graph_problems_are_named(ros, tmp_path, structured_weights):
    # a large model input makes inference slow enough to overload it on purpose
    node = start_node(
        tmp_path,
        NS,
        structured_weights,
        input_height=192,
        input_width=288,
        diagnostics_window=WINDOW,
        camera_timeout=2.0,
    )
    probe = DepthProbe(NS, name="health_probe")
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    feed = Feed(probe, ex)
    others = []
    try:
        assert spin_until(ex, probe.connected, 20)
        feed.run(2.0, 2.0)
        assert feed.settle(0.1) == (OK, "ok"), feed.status()
        # a burst: overloaded (WARN), then it clears once the input rate is sane again
        feed.run(1.5, 60.0)
        level, message = feed.settle(0.1)
        assert level == WARN and "overloaded: skipped" in message and f"last {WINDOW:g} s" in message, message
        feed.run(WINDOW + 1.5, 2.0)
        assert feed.settle(0.1) == (OK, "ok"), feed.status()
        # the camera stops: STALE, naming the topic and how long
        level, message = feed.settle(2.5)
        assert level == STALE and message.startswith(f"no image on {NS}/image for "), message
        # zero stamps and stamps far from the clock: warned once each
        feed.run(1.0, 10.0, stamp=Time(sec=0, nanosec=0))
        feed.run(1.0, 10.0, stamp=Time(sec=7))
        out = node.output()
        assert out.count(f"images on {NS}/image have zero stamps") == 1, out
        assert out.count(f"stamps on {NS}/image are") == 1 and "behind this node's clock" in out, out
        # a second publisher on the image topic, and a second node with the node's name
        other = rclpy.create_node("second_camera")
        other.create_publisher(Image, f"{NS}/image", 10)
        twin = rclpy.create_node("bore_depth_mono", namespace=NS)
        others += [other, twin]
        feed.run(1.5, 2.0)
        level, message = feed.settle(0.5)
        assert level == WARN, message
        assert (
            f"2 publishers on {NS}/image" in message and f"2 nodes are named {NS}/bore_depth_mono" in message
        )
        feed.run(1.0, 2.0)
        out = node.output()
        assert out.count(f"2 publishers on {NS}/image") == 1 and out.count("2 nodes are named") == 1, out
        assert node.alive()
    finally:
        for o in others:
            o.destroy_node()
        ex.remove_node(probe)
        probe.destroy_node()
        node.stop()
