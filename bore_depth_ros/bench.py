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
    from .ros.env import ensure_local_ros_env

    ensure_local_ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from std_msgs.msg import Header

    from .core.camera import Intrinsics
    from .ros import conversions as conv
    from .ros.mono_node import MonoDepthNode
    from .ros.probe import DepthProbe
    from .sim.procedural import Scene, camera_rotation, render

    intr = Intrinsics(0.8 * width, 0.8 * width, (width - 1) / 2, (height - 1) / 2, width, height)
    rgb, _ = render(Scene.street(1), intr, (0.0, 0.0, 1.2), camera_rotation(8.0))
    rclpy.init(args=[])
    try:
        node = MonoDepthNode(namespace="/bench", parameter_overrides=[
            Parameter("backend", value=backend), Parameter("input_height", value=height),
            Parameter("input_width", value=width)])
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
            probe.publish(conv.rgb_image_msg(header, rgb), conv.camera_info_msg(header, intr))
            while not probe.complete(header.stamp):
                ex.spin_once(timeout_sec=0.01)
            if i >= 2:  # the first frames warm up caches and DDS
                round_trip.append((time.perf_counter() - t0) * 1e3)
        t = {k: statistics.median(v.values()[2:]) for k, v in node.timing.items()}
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

    from .backends import create_backend
    from .models import create_model, get_model_info

    torch.manual_seed(0)
    model = create_model("bore_depth").eval()
    info = get_model_info("bore_depth")
    shape = (1, 3, height, width)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = {}
    for name in ("torch", "onnxruntime"):
        be = create_backend(name, model=model, model_name="bore_depth", input_shape=shape,
                            output_names=info.output_names)
        out[name] = _median_ms(lambda: be.infer(x), repeats)
        be.close()
    out["torch_threads"] = torch.get_num_threads()
    return out


def run_mono_bench(frames: int = 20, height: int = 256, width: int = 320) -> dict:
    print(f"[bench] mono node, {height}x{width} input = model input, ONNX Runtime CPU, "
          f"{frames} frames (medians)")
    t = bench_node_overhead(frames, height, width)
    overhead = t["e2e_ms"] - t["infer_ms"]
    print(f"  model (backend.infer)          {t['infer_ms']:8.2f} ms")
    print(f"  node end-to-end (msg in->out)  {t['e2e_ms']:8.2f} ms  (preprocess "
          f"{t['preprocess_ms']:.2f}, post {t['post_ms']:.2f}, publish {t['publish_ms']:.2f})")
    print(f"  node overhead / model time     {overhead / t['infer_ms']:8.4f}   (target <= 0.05)")
    print(f"  probe round trip (publish->all outputs received) {t['round_trip_ms']:.2f} ms, "
          f"ratio to model {t['round_trip_ms'] / t['infer_ms']:.3f}")
    b = bench_backends(height, width, repeats=max(5, frames // 2))
    print(f"[bench] BoRe-Depth 1x3x{height}x{width} on CPU ({b['torch_threads']} torch threads)")
    print(f"  PyTorch eager {b['torch']:8.2f} ms | ONNX Runtime {b['onnxruntime']:8.2f} ms | "
          f"ONNX Runtime speed-up over eager {b['torch'] / b['onnxruntime']:.2f}x")
    return {"node": t, "backends": b, "overhead_ratio": overhead / t["infer_ms"],
            "ort_speedup": b["torch"] / b["onnxruntime"]}
