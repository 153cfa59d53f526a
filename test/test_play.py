"""`bore-depth play` drives a real node over ROS 2 (separate processes) with the bag's clock."""

from __future__ import annotations

import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image

from bore_depth_ros.bag.messages import BAG
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.transforms import Transform
from bore_depth_ros.sim.procedural import Scene, camera_rotation, render
from bore_depth_ros.sim.rig import MONO_RIG, camera_topics
from harness import NodeProcess, entry_point, spin_until, write_params

START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 400_000_000  # 2.5 Hz: slow enough for the node on a loaded 2-core machine
FRAMES = 4


def write_mono_bag(path, frames=FRAMES):
    cam = MONO_RIG[0]
    intr = Intrinsics(60.0, 60.0, 47.5, 31.5, 96, 64)
    topics = camera_topics(cam.name)
    stamps = []
    with BagWriter(path) as bag:
        bag.write(
            "/tf_static",
            BAG.tf_message(
                [
                    BAG.transform_stamped(
                        BAG.header(START_NS, "base_link"), cam.optical_frame, cam.base_from_optical()
                    )
                ]
            ),
            START_NS,
        )
        for i in range(frames):
            t = START_NS + (i + 1) * PERIOD_NS
            rgb, depth = render(Scene.street(2), intr, (0.5 * i, 0.0, 1.5), camera_rotation(5.0))
            bag.write("/clock", BAG.clock(t), t)
            bag.write(
                "/tf",
                BAG.tf_message(
                    [
                        BAG.transform_stamped(
                            BAG.header(t, "odom"),
                            "base_link",
                            Transform(np.eye(3), np.array([0.5 * i, 0.0, 0.0])),
                        )
                    ]
                ),
                t,
            )
            bag.write(topics["camera_info"], BAG.camera_info(BAG.header(t, cam.optical_frame), intr), t)
            bag.write(topics["image"], BAG.image(BAG.header(t, cam.optical_frame), rgb, "rgb8"), t)
            bag.write(topics["depth_gt"], BAG.image(BAG.header(t, cam.optical_frame), depth, "32FC1"), t)
            stamps.append(t)
    return stamps


def test_play_drives_a_node_that_keeps_the_bag_stamps(ros, tmp_path, structured_weights):
    stamps = write_mono_bag(tmp_path / "mono_bag")
    params = write_params(
        tmp_path / "p.yaml",
        dict(
            weights=structured_weights,
            input_height=64,
            input_width=96,
            use_sim_time=True,
            diagnostics_period=0.2,
        ),
    )
    node = NodeProcess(
        [
            entry_point("bore-depth-mono-node"),
            "--ros-args",
            "--params-file",
            str(params),
            "-r",
            "__ns:=/cameras/front",
        ],
        tmp_path / "node.log",
    )
    player = None
    got: dict[int, Image] = {}
    diag_stamps: list[int] = []
    listener = rclpy.create_node("play_listener")
    listener.create_subscription(
        Image,
        "/cameras/front/depth/image",
        lambda m: got.__setitem__(msgs.stamp_ns(m.header), m),
        QoSProfile(depth=20, reliability=QoSReliabilityPolicy.RELIABLE),
    )
    listener.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: (
            diag_stamps.append(msgs.stamp_ns(m.header))
            if any("/cameras/front" in s.name for s in m.status)
            else None
        ),
        20,
    )
    ex = SingleThreadedExecutor()
    ex.add_node(listener)
    try:
        assert node.wait_for_output("ready:", 120), node.output()
        assert spin_until(ex, lambda: listener.count_publishers("/cameras/front/depth/image") > 0, 20)
        player = NodeProcess(
            [
                entry_point("bore-depth"),
                "play",
                str(tmp_path / "mono_bag"),
                "--wait-for",
                "/cameras/front/image",
                "/cameras/front/camera_info",
                "--no-progress",
            ],
            tmp_path / "player.log",
        )
        assert spin_until(ex, lambda: len(got) == FRAMES, timeout=60), (
            f"got {[stamps.index(t) for t in sorted(got) if t in stamps]} of {FRAMES} frames; "
            f"player: {player.output()[-300:]}; node: {node.output()[-1500:]}"
        )
        assert sorted(got) == stamps
        for _t, msg in got.items():
            assert msg.header.frame_id == MONO_RIG[0].optical_frame
            assert (msg.width, msg.height, msg.encoding) == (96, 64, "32FC1")
        player.proc.wait(timeout=30)
        assert player.proc.returncode == 0, player.output()
        assert "published" in player.output() and "skipped /clock" in player.output()
        # the node ran on the bag's clock: its diagnostics are stamped with simulated time
        time.sleep(0.5)
        spin_until(ex, lambda: any(s >= START_NS for s in diag_stamps), 10)
        sim = [s for s in diag_stamps if s >= START_NS]
        assert sim and max(sim) <= stamps[-1] + 10 * PERIOD_NS, diag_stamps[-5:]
    finally:
        ex.remove_node(listener)
        listener.destroy_node()
        if player is not None:
            player.stop()
        node.stop()


def test_play_of_a_missing_or_unreadable_bag_is_one_line(tmp_path):
    import subprocess

    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n" + bytes(100))
    for bag in (tmp_path / "nope", bad):
        proc = subprocess.run(
            [entry_point("bore-depth"), "play", str(bag)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("bore-depth play: ") and "Traceback" not in proc.stderr, proc.stderr
        assert str(bag) in proc.stderr
