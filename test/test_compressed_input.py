"""Both nodes with ``image_transport: compressed``: JPEG CompressedImage in, the node contract out.

One container process runs four nodes (a mono and a two-camera surround node on compressed input,
and the same two on raw input, sharing their models). This process publishes a JPEG to the
compressed nodes and the JPEG's decoded pixels as a raw rgb8 Image to the raw ones: the depth must
be the same. Corrupt and truncated JPEGs are counted under their reasons and the node keeps
serving.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from bore_depth_ros.core import messages as M
from bore_depth_ros.ros.conversions import RCLPY
from bore_depth_ros.testing.probe import DepthProbe
from harness import NodeProcess, entry_point, make_test_image, spin_until
from ros_clients import camera_info

W, H = 80, 60
CAMS = ["front", "back"]


def _jpeg(header, rgb):
    return RCLPY.compressed_image(header, rgb, "jpeg", quality=85)


def test_compressed_input_gives_the_raw_paths_depth_and_counts_bad_data(ros, tmp_path, structured_weights):
    yaml = tmp_path / "container.yaml"
    yaml.write_text(f"""
bore_depth_container:
  ros__parameters:
    nodes: ["mono /jpeg", "mono /raw", "surround /rigjpeg", "surround /rigraw"]
    share_engine: true
    threads: 2
/**:
  ros__parameters:
    input_height: 64
    input_width: 96
    diagnostics_period: 0.3
    cameras: {CAMS}
/jpeg/bore_depth_mono:
  ros__parameters:
    weights: {structured_weights}
    image_transport: compressed
/raw/bore_depth_mono:
  ros__parameters:
    weights: {structured_weights}
/rigjpeg/bore_depth_surround:
  ros__parameters:
    image_transport: compressed
""")
    proc = NodeProcess(
        [entry_point("bore-depth-container"), "--ros-args", "--params-file", str(yaml)], tmp_path / "c.log"
    )
    jpeg, raw = DepthProbe("/jpeg", name="probe_jpeg"), DepthProbe("/raw", name="probe_raw")
    rig = {
        ns: {c: DepthProbe(f"{ns}/{c}", name=f"probe_{ns[1:]}_{c}") for c in CAMS}
        for ns in ("/rigjpeg", "/rigraw")
    }
    pub_jpeg = jpeg.create_publisher(CompressedImage, "/jpeg/image/compressed", qos_profile_sensor_data)
    pub_rig = {
        c: jpeg.create_publisher(CompressedImage, f"/rigjpeg/{c}/image/compressed", qos_profile_sensor_data)
        for c in CAMS
    }
    probes = [jpeg, raw, *rig["/rigjpeg"].values(), *rig["/rigraw"].values()]
    ex = SingleThreadedExecutor()
    for p in probes:
        ex.add_node(p)
    try:
        assert proc.wait_for_output("ready:", 180), proc.output()
        assert spin_until(ex, lambda: proc.output().count("ready:") == 4, 120), proc.output()
        assert "subscribed to /jpeg/image/compressed" in proc.output()
        assert spin_until(ex, lambda: pub_jpeg.get_subscription_count() > 0 and raw.connected(), 30)
        assert spin_until(ex, lambda: all(p.get_subscription_count() for p in pub_rig.values()), 30)

        def send_mono(sec: int, compressed: CompressedImage | None = None, rgb=None):
            stamp = Time(sec=sec)
            header = Header(stamp=stamp, frame_id="cam_optical_frame")
            msg = compressed if compressed is not None else _jpeg(header, rgb)
            msg.header = header
            info = camera_info(W, H, "cam_optical_frame", 70.0, 70.0, 39.5, 29.5, stamp)
            jpeg.pub_info.publish(info)
            pub_jpeg.publish(msg)
            return stamp, msg

        # 1. mono: the JPEG's depth equals the raw path's on the decoded pixels
        rgb = make_test_image(H, W, seed=3)
        stamp, msg = send_mono(10, rgb=rgb)
        decoded = M.image_rgb(msg)
        raw.publish(
            RCLPY.image(Header(stamp=stamp, frame_id="cam_optical_frame"), decoded, "rgb8"),
            camera_info(W, H, "cam_optical_frame", 70.0, 70.0, 39.5, 29.5, stamp),
        )
        assert spin_until(ex, lambda: jpeg.complete(stamp) and raw.complete(stamp), 60), proc.output()
        got, want = jpeg.received[(10, 0)], raw.received[(10, 0)]
        d_jpeg, d_raw = M.image_array(got["depth/image"]), M.image_array(want["depth/image"])
        assert d_jpeg.shape == (H, W) and np.isfinite(d_jpeg).any()
        assert np.array_equal(d_jpeg, d_raw, equal_nan=True)
        assert got["depth/image"].header == msg.header  # the contract: the input's header
        assert got["depth/camera_info"].width == W and got["points"].width == W

        # 2. corrupt and truncated JPEGs: counted by reason, the next frame is served
        good = _jpeg(Header(), rgb)
        data = bytes(good.data)
        corrupt = CompressedImage(format=good.format, data=data[:300] + bytes(range(256)) * 8 + data[-2:])
        truncated = CompressedImage(format=good.format, data=data[: len(data) // 2])
        send_mono(11, corrupt)
        send_mono(12, truncated)
        stamp, _ = send_mono(13, rgb=rgb)
        assert spin_until(ex, lambda: jpeg.complete(stamp), 60), proc.output()

        def counted():
            v = jpeg.latest_diagnostic_values("/jpeg/bore_depth_mono")
            return (
                v.get("rejected.compressed_corrupt") == "1" and v.get("rejected.compressed_truncated") == "1"
            )

        assert spin_until(ex, counted, 10), jpeg.latest_diagnostic_values("/jpeg/bore_depth_mono")
        assert "compressed_corrupt" in proc.output() and "compressed_truncated" in proc.output()

        # 3. surround: a JPEG set gives per-view depth equal to the raw set's
        stamp = Time(sec=20)
        sent = {}
        for k, cam in enumerate(CAMS):
            header = Header(stamp=stamp, frame_id=f"{cam}_optical_frame")
            info = camera_info(W, H, header.frame_id, 60.0, 60.0, 39.5, 29.5, stamp)
            msg = _jpeg(header, make_test_image(H, W, seed=10 + k))
            sent[cam] = M.image_rgb(msg)
            rig["/rigjpeg"][cam].pub_info.publish(info)
            pub_rig[cam].publish(msg)
            rig["/rigraw"][cam].publish(RCLPY.image(header, sent[cam], "rgb8"), info)
        assert spin_until(
            ex, lambda: all(p.complete(stamp) for ns in rig.values() for p in ns.values()), 60
        ), proc.output()
        for cam in CAMS:
            a = M.image_array(rig["/rigjpeg"][cam].received[(20, 0)]["depth/image"])
            b = M.image_array(rig["/rigraw"][cam].received[(20, 0)]["depth/image"])
            assert a.shape == (H, W) and np.array_equal(a, b, equal_nan=True), cam
        assert proc.alive()
    finally:
        for p in probes:
            ex.remove_node(p)
            p.destroy_node()
        proc.stop()


def test_image_transport_is_checked_like_every_parameter():
    from bore_depth_ros.ros import params as P

    assert P.MONO["image_transport"].check("compressed") is None
    assert "must be one of raw, compressed" in P.SURROUND["image_transport"].check("theora")
    assert P.MONO["image_transport"].default == "raw"
