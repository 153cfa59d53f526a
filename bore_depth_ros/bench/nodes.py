"""Benchmarks that print ratios measured in one run (never timed tests).

``run_mono_bench``: (1) the mono node's own overhead: per-frame end-to-end time inside the node
(message in to all messages out) versus the model's time, for 256x320 input on ONNX Runtime CPU;
(2) ONNX Runtime versus PyTorch eager on CPU for the same model, weights and input.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_node_overhead(frames: int, height: int, width: int, backend: str = "onnxruntime") -> dict:
    from ..ros.env import ensure_local_ros_env

    ensure_local_ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from std_msgs.msg import Header

    from ..core.camera import Intrinsics
    from ..ros.conversions import RCLPY
    from ..ros.mono_node import MonoDepthNode
    from ..sim.procedural import Scene, camera_rotation, render
    from ..testing.probe import DepthProbe

    intr = Intrinsics(0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2, width, height)
    rgb, _ = render(Scene.street(1), intr, (0.0, 0.0, 1.2), camera_rotation(8.0))
    rclpy.init(args=[])
    try:
        node = MonoDepthNode(
            namespace="/bench",
            parameter_overrides=[
                Parameter("backend", value=backend),
                Parameter("input_height", value=height),
                Parameter("input_width", value=width),
            ],
        )
        probe = DepthProbe("/bench", name="bench_camera")
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.add_node(probe)
        while not probe.connected():
            ex.spin_once(timeout_sec=0.05)
        round_trip = []
        for i in range(frames + 2):
            header = Header(frame_id="bench_optical_frame")
            header.stamp.sec = 10 + i
            t0 = time.perf_counter()
            probe.publish(RCLPY.image(header, rgb, "rgb8"), RCLPY.camera_info(header, intr))
            while not probe.complete(header.stamp):
                ex.spin_once(timeout_sec=0.01)
            if i >= 2:  # the first frames warm up caches and DDS
                round_trip.append((time.perf_counter() - t0) * 1e3)
        # latency is left out for stamps far from the node's clock (these are): skip empty series
        t = {k: statistics.median(v.values()[2:]) for k, v in node.timing.items() if len(v.values()) > 2}
        ex.remove_node(node)
        ex.remove_node(probe)
        node.destroy_node()
        probe.destroy_node()
    finally:
        rclpy.try_shutdown()
    t["round_trip_ms"] = statistics.median(round_trip)
    return t


def bench_backends(height: int, width: int, repeats: int) -> dict:
    import torch

    from ..backends import create_backend
    from ..models import create_model, get_model_info

    torch.manual_seed(0)
    model = create_model("bore_depth").eval()
    info = get_model_info("bore_depth")
    shape = (1, 3, height, width)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = {}
    for name in ("torch", "onnxruntime"):
        be = create_backend(
            name, model=model, model_name="bore_depth", input_shape=shape, output_names=info.output_names
        )
        out[name] = _median_ms(lambda be=be: be.infer(x), repeats)
        be.close()
    out["torch_threads"] = torch.get_num_threads()
    return out


def run_mono_bench(frames: int = 20, height: int = 256, width: int = 320) -> dict:
    print(
        f"[bench] mono node, {height}x{width} input = model input, ONNX Runtime CPU, "
        f"{frames} frames (medians)"
    )
    t = bench_node_overhead(frames, height, width)
    overhead = t["e2e_ms"] - t["infer_ms"]
    print(f"  model (backend.infer)          {t['infer_ms']:8.2f} ms")
    print(
        f"  node end-to-end (msg in->out)  {t['e2e_ms']:8.2f} ms  (preprocess "
        f"{t['preprocess_ms']:.2f}, post {t['post_ms']:.2f}, publish {t['publish_ms']:.2f})"
    )
    print(f"  node overhead / model time     {overhead / t['infer_ms']:8.4f}   (issue 17 target <= 0.03)")
    print(
        f"  probe round trip (publish->all outputs received) {t['round_trip_ms']:.2f} ms, "
        f"ratio to model {t['round_trip_ms'] / t['infer_ms']:.3f}"
    )
    b = bench_backends(height, width, repeats=max(5, frames // 2))
    print(f"[bench] BoRe-Depth 1x3x{height}x{width} on CPU ({b['torch_threads']} torch threads)")
    print(
        f"  PyTorch eager {b['torch']:8.2f} ms | ONNX Runtime {b['onnxruntime']:8.2f} ms | "
        f"ONNX Runtime speed-up over eager {b['torch'] / b['onnxruntime']:.2f}x"
    )
    return {
        "node": t,
        "backends": b,
        "overhead_ratio": overhead / t["infer_ms"],
        "ort_speedup": b["torch"] / b["onnxruntime"],
    }


def bench_batching(model: str, height: int, width: int, views: int, repeats: int) -> dict:
    """Six views as one batch versus six single-view calls (same weights, ONNX Runtime CPU)."""
    from ..engine import DepthEngine, EngineConfig
    from ..sim.rig import SURROUND_RIG

    cams = SURROUND_RIG[:views]
    intr = [c.intrinsics(width, height) for c in cams]
    tfs = [c.base_from_optical() for c in cams]
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in cams]
    batched = DepthEngine(EngineConfig(model=model, batch=views, input_height=height, input_width=width))
    single = DepthEngine(EngineConfig(model=model, batch=1, input_height=height, input_width=width))
    t_batch = _median_ms(lambda: batched.infer(imgs, intr, tfs), repeats)
    t_seq = _median_ms(lambda: [single.infer([im], [k], [t]) for im, k, t in zip(imgs, intr, tfs)], repeats)
    return {"batched_ms": t_batch, "sequential_ms": t_seq}


def bench_fusion(height: int, width: int, repeats: int = 20) -> dict:
    """Fusing six views into one cloud versus copying the same number of bytes."""
    from ..core.fusion import fuse_views, pack_unorganized
    from ..sim.procedural import Scene, render
    from ..sim.rig import SURROUND_RIG

    depths, intrs, tfs, rgbs = [], [], [], []
    for cam in SURROUND_RIG:
        tf = cam.base_from_optical()
        rgb, d = render(Scene.street(5), cam.intrinsics(width, height), tf.translation, tf.rotation)
        depths.append(d)
        intrs.append(cam.intrinsics(width, height))
        tfs.append(tf)
        rgbs.append(rgb)
    out = {}
    for rgb in (False, True):

        def fuse(rgb=rgb):
            return pack_unorganized(
                fuse_views(depths, intrs, tfs, stride=1, max_range=200.0, colors=rgbs if rgb else None)
            )

        nbytes = fuse().data.nbytes
        src = np.ones(nbytes, np.uint8)
        dst = np.empty_like(src)
        out["rgb" if rgb else "xyz"] = {
            "fuse_ms": _median_ms(fuse, repeats),
            "copy_ms": _median_ms(lambda dst=dst, src=src: np.copyto(dst, src), repeats),
            "bytes": nbytes,
        }
    return out


def bench_surround_latency(frames: int, height: int, width: int, model: str = "svr") -> dict:
    """Newest input stamp to fused cloud (measured by a subscriber) versus the model's time."""
    from ..ros.env import ensure_local_ros_env

    ensure_local_ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from ..ros.conversions import RCLPY
    from ..ros.surround_node import SurroundDepthNode
    from ..sim.procedural import Scene, render
    from ..sim.rig import RING_ORDER, SURROUND_RIG
    from ..testing.probe import DepthProbe

    rig = {c.name: c for c in SURROUND_RIG}
    frames_rgb = {}
    for name in RING_ORDER:
        cam = rig[name]
        tf = cam.base_from_optical()
        frames_rgb[name] = render(
            Scene.street(6), cam.intrinsics(width, height), tf.translation, tf.rotation
        )[0]
    rclpy.init(args=[])
    try:
        node = SurroundDepthNode(
            namespace="/bench_rig",
            parameter_overrides=[
                Parameter("model", value=model),
                Parameter("input_height", value=height),
                Parameter("input_width", value=width),
            ],
        )
        probes = {n: DepthProbe(f"/bench_rig/{n}", name=f"bench_{n}", outputs={}) for n in RING_ORDER}
        listener = rclpy.create_node("bench_listener")
        latencies = []
        listener.create_subscription(
            PointCloud2,
            "/bench_rig/points",
            lambda m: latencies.append(
                (
                    listener.get_clock().now().nanoseconds
                    - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
                )
                / 1e6
            ),
            QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE),
        )
        ex = SingleThreadedExecutor()
        for n in [node, listener, *probes.values()]:
            ex.add_node(n)
        tf_static = _static_tf_msg(rig)
        from rclpy.qos import QoSDurabilityPolicy
        from tf2_msgs.msg import TFMessage

        tf_pub = listener.create_publisher(
            TFMessage,
            "/tf_static",
            QoSProfile(
                depth=1,
                reliability=QoSReliabilityPolicy.RELIABLE,
                durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
            ),
        )
        tf_pub.publish(tf_static)
        while not all(p.pub_image.get_subscription_count() for p in probes.values()):
            ex.spin_once(timeout_sec=0.05)
        for i in range(frames + 2):
            header = Header()
            header.stamp = listener.get_clock().now().to_msg()
            for name, p in probes.items():
                header.frame_id = rig[name].optical_frame
                p.publish(
                    RCLPY.image(header, frames_rgb[name], "rgb8"),
                    RCLPY.camera_info(header, rig[name].intrinsics(width, height)),
                )
            target = i + 1
            while len(latencies) < target:
                ex.spin_once(timeout_sec=0.01)
        # latency is left out for stamps far from the node's clock (these are): skip empty series
        t = {k: statistics.median(v.values()[2:]) for k, v in node.timing.items() if len(v.values()) > 2}
        lat = latencies[2:]
        for n in [node, listener, *probes.values()]:
            ex.remove_node(n)
            n.destroy_node()
    finally:
        rclpy.try_shutdown()
    return {"latency_ms_median": statistics.median(lat), "latency_ms_max": max(lat), "node": t}


def _static_tf_msg(rig):
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    msg = TFMessage()
    for cam in rig.values():
        tf = cam.base_from_optical()
        ts = TransformStamped()
        ts.header.frame_id, ts.child_frame_id = "base_link", cam.optical_frame
        ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = (
            float(v) for v in tf.translation
        )
        (
            ts.transform.rotation.x,
            ts.transform.rotation.y,
            ts.transform.rotation.z,
            ts.transform.rotation.w,
        ) = tf.quat()
        msg.transforms.append(ts)
    return msg


def run_surround_bench(frames: int = 8, height: int = 192, width: int = 320, model: str = "svr") -> dict:
    print(f"[bench] {model}, six views at {height}x{width}, ONNX Runtime CPU (medians)")
    b = bench_batching(model, height, width, 6, repeats=max(3, frames // 2))
    print(f"  one batch of 6 views      {b['batched_ms']:8.1f} ms")
    print(
        f"  6 single-view calls       {b['sequential_ms']:8.1f} ms   "
        f"batched speed-up {b['sequential_ms'] / b['batched_ms']:.2f}x"
    )
    f = bench_fusion(height, width)
    for k, v in f.items():
        print(
            f"  fuse 6 views ({k}, {v['bytes'] / 1e6:.2f} MB out) {v['fuse_ms']:7.2f} ms vs "
            f"copying as many bytes {v['copy_ms']:.3f} ms: {v['fuse_ms'] / v['copy_ms']:.1f}x "
            "memory-copy time"
        )
    s = bench_surround_latency(frames, height, width, model)
    n = s["node"]
    print(
        f"  newest input stamp -> fused cloud received: median {s['latency_ms_median']:.1f} ms "
        f"(max {s['latency_ms_max']:.1f}); model {n['infer_ms']:.1f} ms; latency / model "
        f"{s['latency_ms_median'] / n['infer_ms']:.3f}"
    )
    print(
        f"  inside the node: preprocess {n['preprocess_ms']:.1f}, post {n['post_ms']:.1f}, "
        f"publish views {n['publish_ms']:.1f}, fuse+overlaps {n['fuse_ms']:.1f} ms"
    )
    return {"batching": b, "fusion": f, "latency": s}
