"""The embedded default (``tools/demo``): render, evaluate, and run the live node, in one command.

1. ``synth``: render a short six-camera street recording with ground truth (pybullet, CPU) as a
   rosbag2 file;
2. ``eval``: replay it through the depth pipeline offline, compare with the ground truth, and
   write a report (Markdown + HTML, plots, colourised panels) and an output bag for rviz;
3. live: feed the front camera's frames over ROS 2 into a real ``MonoDepthNode`` (same process,
   same executor, real DDS messages), record every output topic, and write what it published
   (panels, a PLY point cloud) next to a summary with the node's own timing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .core.files import claim_outputs
from .core.metrics import depth_metrics, mean_metrics


def run_demo(
    out_dir: str = "demo_output",
    frames: int = 6,
    backend: str = "onnxruntime",
    weights: str = "",
    width: int = 320,
    height: int = 192,
    seed: int = 0,
    quiet: bool = False,
    surround_model: str = "svr",
    force: bool = False,
) -> dict:
    from .engine import DepthEngine, EngineConfig
    from .replay.evaluate import EvalConfig, evaluate
    from .sim.recording import RecordingConfig, record

    say = (lambda *a: None) if quiet else print
    out = Path(out_dir)
    bag = out / "recording"
    # what the demo writes; a user's existing files there are replaced only with force
    claim_outputs([bag, out / "depth_bag", out / "report", out / "live", out / "summary.json"], force)
    out.mkdir(parents=True, exist_ok=True)
    say(f"[demo] 1/3 rendering a six-camera recording ({frames} frames, {width}x{height}) -> {bag}")
    rec = record(
        bag,
        RecordingConfig(rig="surround", frames=frames, width=width, height=height, seed=seed),
        progress=not quiet,
    )
    say(f"[demo]     {rec.images_per_second:.1f} images/s rendered")
    say(
        f"[demo] 2/3 evaluating the six-camera {surround_model} model against the ground truth "
        "(offline replay of the node pipeline)"
    )
    result = evaluate(
        EvalConfig(
            bag=str(bag),
            model=surround_model,
            backend=backend,
            report_dir=str(out / "report"),
            output_bag=str(out / "depth_bag"),
        ),
        progress=not quiet,
    )
    engine = DepthEngine(EngineConfig(weights=weights, backend=backend))
    ov = result.overall
    say(
        "[demo] 3/3 running the live mono BoRe-Depth node on the front camera over ROS 2 "
        "(metric scale from the ground plane and the camera height)"
    )
    live = run_live_node(bag, out / "live", quiet=quiet, engine=engine)
    summary = {
        "recording": str(bag),
        "render_images_per_second": rec.images_per_second,
        "eval": {
            "report": str(out / "report" / "report.html"),
            "output_bag": str(out / "depth_bag"),
            "frames": result.frames,
            "overall": ov,
        },
        "live": live,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    say("")
    fmt = lambda m: ", ".join(f"{k} {m[k]:.3f}" for k in ("abs_rel", "rmse", "a1"))  # noqa: E731
    say(
        f"[demo] {surround_model}: {result.frames.get('evaluated', '')} camera frames evaluated; "
        f"metric: {fmt(ov['metric'])}; median-scaled: {fmt(ov['median'])}"
    )
    lm = live["metrics_metric"]
    say(
        f"[demo] live BoRe-Depth node (ground-plane scale): metric AbsRel {lm['abs_rel']:.3f}, "
        f"median-scaled AbsRel {live['metrics_median_scaled']['abs_rel']:.3f}"
    )
    say(f"[demo] report:        {out / 'report' / 'report.html'}  (and report.md)")
    say(f"[demo] output bag:    {out / 'depth_bag'}  (depth, confidence, points per camera; rviz)")
    say(
        f"[demo] live node:     {out / 'live'}/frame_*.png, points.ply; node overhead "
        f"{live['node_overhead_over_model']:.1%} of model time"
    )
    for src in (result.engine.get("weights_source", ""), engine.weights_source):
        if "random-init" in src:
            say(
                "[demo] NOTE: a model without trained weights ran; its depth is that of an untrained network."
            )
    return summary


def run_live_node(
    bag: Path,
    out: Path,
    engine=None,
    backend: str = "onnxruntime",
    weights: str = "",
    camera: str = "/cameras/front",
    timeout: float = 120.0,
    quiet: bool = False,
) -> dict:
    """Feed one camera of a recording into a MonoDepthNode over ROS 2 and record its outputs.

    ``engine`` (batch 1) shares an already loaded model with the node."""
    from .ros.env import ensure_local_ros_env

    ensure_local_ros_env()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from .bag.messages import TYPESTORE
    from .bag.reader import FrameSync, discover_cameras, open_bag
    from .core import messages as msgs
    from .ros import conversions as conv
    from .ros.mono_node import MonoDepthNode
    from .testing.probe import DepthProbe
    from .viz import colorize, colorize_depth, panel, save_png, write_ply

    say = (lambda *a: None) if quiet else print
    out.mkdir(parents=True, exist_ok=True)
    with open_bag(bag) as reader:
        cams = [c for c in discover_cameras(reader) if c.namespace == camera]
        frames = list(FrameSync(reader, cams))
    from rclpy.signals import SignalHandlerOptions

    # no rclpy signal handlers: Ctrl-C must not shut the context down under the node's worker
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    try:
        from .sim.rig import SURROUND_RIG

        height_m = next(c.position[2] for c in SURROUND_RIG if f"/{c.name}" == camera[-len(c.name) - 1 :])
        params = [
            Parameter("backend", value=backend),
            Parameter("weights", value=weights),
            Parameter("confidence_threshold", value=0.05),
            Parameter("scale_mode", value="ground_plane"),
            Parameter("camera_height", value=float(height_m)),
            Parameter("points_decimation", value=2),
        ]
        node = MonoDepthNode(namespace=camera, parameter_overrides=params, engine=engine)
        probe = DepthProbe(camera, name="demo_camera")
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.add_node(probe)
        deadline = time.monotonic() + 20
        while not probe.connected() and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        rows = []
        for i, fr in enumerate(frames):
            # rosbags objects -> rclpy messages through CDR, exactly what a bag player sends
            image = conv.from_cdr(
                TYPESTORE.serialize_cdr(fr.image, fr.image.__msgtype__), "sensor_msgs/msg/Image"
            )
            info = conv.from_cdr(
                TYPESTORE.serialize_cdr(fr.camera_info, fr.camera_info.__msgtype__),
                "sensor_msgs/msg/CameraInfo",
            )
            probe.publish(image, info)
            stamp = image.header.stamp
            end = time.monotonic() + timeout
            while not probe.complete(stamp) and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.02)
            if not probe.complete(stamp):
                raise RuntimeError(f"the node published nothing for frame {i} within {timeout} s")
            res = probe.received[(stamp.sec, stamp.nanosec)]
            rgb = msgs.image_rgb(fr.image)
            gt = msgs.depth_metres(fr.depth_gt)
            depth = msgs.image_array(res["depth/image"]).copy()
            conf = msgs.image_array(res["confidence/image"]).copy()
            summ = res["view_confidence"]
            m = depth_metrics(depth, gt, 0.5, 80.0, median_scaling=True)
            mm = depth_metrics(depth, gt, 0.5, 80.0)
            rows.append(
                {
                    "stamp_ns": msgs.stamp_ns(image.header),
                    "scale": summ.depth_scale,
                    "_mm": mm,
                    "scale_source": summ.scale_source,
                    "valid_fraction": summ.valid_fraction,
                    "mean_confidence": summ.mean_confidence,
                    "inference_ms": summ.inference_time_ms,
                    "_m": m,
                }
            )
            vmax = float(np.percentile(gt[np.isfinite(gt)], 95))
            save_png(
                out / f"frame_{i:03d}.png",
                panel(
                    [
                        rgb,
                        colorize_depth(depth, vmax),
                        colorize(conf, 0, 1, "viridis"),
                        colorize_depth(gt, vmax),
                    ],
                    ["input", "published depth", "confidence", "ground truth"],
                ),
            )
            if i == len(frames) - 1:
                n_pts = write_ply(
                    out / "points.ply",
                    msgs.cloud_fields(res["points"]).reshape(res["points"].height, res["points"].width, 3),
                    rgb[::2, ::2],
                )
        node.worker.wait_idle(10.0)
        accounting = node.accounting()
        timing = {k: round(v.mean(), 2) for k, v in node.timing.items()}
        summary = {
            "camera": camera,
            "frames": len(rows),
            "engine": node.engine.describe(),
            "timing_ms_mean": timing,
            "node_overhead_over_model": (timing["e2e_ms"] - timing["infer_ms"]) / timing["infer_ms"],
            "metrics_median_scaled": mean_metrics([r["_m"] for r in rows]),
            "metrics_metric": mean_metrics([r["_mm"] for r in rows]),
            "rejected": node.ledger.rejected.as_dict(),
            "points_in_ply": n_pts,
            "lifecycle_state": node.state,
            "accounting": accounting,
            "frames_detail": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        say(
            f"[demo]     {len(rows)} frames through the node: mean e2e {timing['e2e_ms']:.1f} ms, "
            f"model {timing['infer_ms']:.1f} ms"
        )
        say(
            f"[demo]     node {node.state}: frames in {accounting['frames_in']}, out "
            f"{accounting['frames_out']}, rejected {accounting['rejected_total']}, skipped "
            f"{accounting['skipped_total']}, unaccounted {accounting['unaccounted']}"
        )
        ex.remove_node(probe)
        ex.remove_node(node)
        probe.destroy_node()
        node.destroy_node()
        return summary
    finally:
        rclpy.try_shutdown()
