"""``bore-depth eval``: run the depth pipeline on a rosbag2 and compare with ground truth (offline)."""

from __future__ import annotations

import argparse
import dataclasses
import math

from .argtypes import (
    folder,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from .errors import UsageError, command

HELP = "run the depth pipeline on a rosbag2 and compare with ground truth (offline)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bore-depth eval BAG``."""
    from ..replay.config import GT_MODES, SCALE_MODES, EvalConfig

    d = EvalConfig(bag="")
    a = parser.add_argument
    a(
        "bags",
        nargs="+",
        metavar="BAG",
        help="rosbag2 directory, .mcap or .db3 file; several, a folder of bags or a text file listing "
        "them (one a line, # comments) evaluate a fleet (per-frame JSON Lines, summary, fleet report)",
    )
    a(
        "--camera",
        dest="cameras",
        action="append",
        metavar="TOPIC",
        help="image topic of a camera, Image or CompressedImage (repeat for several; default: auto-detect)",
    )
    a(
        "--camera-info",
        dest="camera_infos",
        action="append",
        metavar="TOPIC",
        help="camera_info topic for each --camera, in the same order (default: the image's sibling)",
    )
    a("--gt", default=d.gt, choices=GT_MODES, help="ground truth: depth images, LiDAR, or auto")
    a(
        "--gt-topic",
        dest="gt_topics",
        action="append",
        metavar="TOPIC",
        help="ground truth for each --camera, in the same order: a depth image (Image or "
        "compressedDepth) or a PointCloud2 in any frame (once without --camera: a cloud for all)",
    )
    a(
        "--lidar-topic",
        default=d.lidar_topic,
        help="PointCloud2 ground truth (default /lidar/points, else the only PointCloud2 topic)",
    )
    a("--model", type=model_name, default=d.model)
    a("--weights", default=d.weights, help="checkpoint or .onnx (default: embedded)")
    a("--backend", default=d.backend, choices=["torch", "onnxruntime", "tensorrt"])
    a("--device", default=d.device)
    a("--input-height", type=positive_int, default=d.input_height)
    a("--input-width", type=positive_int, default=d.input_width)
    a(
        "--scale-mode",
        default=d.scale_mode,
        choices=SCALE_MODES,
        help="fixed (--depth-scale), ground_plane (camera height) or median (per-frame GT oracle)",
    )
    a("--depth-scale", type=positive_float, default=d.depth_scale)
    a(
        "--camera-height",
        type=float,
        default=d.camera_height,
        help="metres above the ground; 0 = from TF (optical origin z in --base-frame)",
    )
    a(
        "--scale-smoothing",
        type=positive_float,
        default=d.scale_smoothing,
        help="ground_plane: weight of each new frame's scale in the running estimate, in (0, 1]; "
        "1 = no smoothing (compare the report's temporal stability)",
    )
    a("--min-depth", type=float, default=d.min_depth)
    a("--max-depth", type=float, default=d.max_depth)
    a("--confidence-threshold", type=float, default=d.confidence_threshold)
    a("--max-frames", type=non_negative_int, default=d.max_frames, help="camera frames to evaluate (0 = all)")
    a("--out", dest="report_dir", type=folder, default=d.report_dir, help="report folder")
    a("--output-bag", default=None, help="write the node's output topics to this new bag")
    a("--force", action="store_true", help="replace an existing report in --out")
    a("--storage", default=d.storage, choices=["mcap", "sqlite3"], help="output bag storage")
    a("--points-decimation", type=positive_int, default=d.points_decimation)
    a("--base-frame", default=d.base_frame)
    a("--odom-frame", default=d.odom_frame)
    a("--lidar-max-dt", type=float, default=d.lidar_max_dt, help="seconds")
    a(
        "--lidar-occlusion-window",
        type=non_negative_int,
        default=d.lidar_occlusion_window,
        help="drop LiDAR points farther than the nearest one within this many pixels (0 = off)",
    )
    a(
        "--rig-slop",
        type=float,
        default=d.rig_slop,
        help="seconds; rig models (semi_smd) get synchronized camera sets within this spread",
    )
    a(
        "--panels",
        dest="panels_per_camera",
        type=non_negative_int,
        default=d.panels_per_camera,
        help="picture panels per camera in the report",
    )
    a("--no-progress", action="store_true")
    a(
        "--threads",
        type=non_negative_int,
        default=d.threads,
        help="CPU threads of one inference (ONNX Runtime; 0 = its default; Ray workers: --ray-num-cpus)",
    )
    a(
        "--start",
        dest="start_s",
        type=non_negative_float,
        default=d.start_s,
        help="one bag: evaluate from this many seconds after its first message (TF before it is used)",
    )
    a(
        "--end",
        dest="end_s",
        type=non_negative_float,
        default=d.end_s,
        help="one bag: stop this many seconds after its first message (0 = at its end)",
    )
    a(
        "--segment",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="fleet: split bags longer than this into segments evaluated as separate tasks (each with "
        "the TF and camera_info before it), joined per bag (0 = one task per bag)",
    )
    a(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="fleet: one task per bag on Ray (no ADDRESS: a local Ray on this machine; else join it)",
    )
    a("--ray-num-cpus", type=positive_float, default=1.0, help="CPUs per Ray model actor (default 1)")
    a("--ray-num-gpus", type=float, default=0.0, help="GPUs per Ray model actor (default 0)")
    a("--ray-workers", type=non_negative_int, default=0, help="Ray model actors (0: as the CPUs allow)")


def config_from_args(args: argparse.Namespace):
    from ..replay.config import EvalConfig

    names = {f.name for f in dataclasses.fields(EvalConfig)}
    return EvalConfig(**{k: v for k, v in vars(args).items() if k in names}, bag=args.bags[0])


@command("eval")
def run(args: argparse.Namespace) -> int:
    """Run ``bore-depth eval`` from parsed arguments; prints a summary; 0 if any frame was evaluated."""
    from ..replay.evaluate import evaluate
    from ..replay.fleet import expand_bags

    bags = expand_bags(args.bags)
    if len(bags) > 1 or args.ray or args.segment:
        return run_fleet(args, bags)
    args.bags = bags
    result = evaluate(config_from_args(args), progress=not args.no_progress)
    fmt = lambda v: "nan" if v is None or not math.isfinite(v) else f"{v:.3f}"  # noqa: E731
    print(
        f"model {result.engine.get('model')} ({result.engine['weights_source']}), "
        f"backend {result.engine.get('backend')}"
    )
    for c in result.cameras + [None]:
        name, m, md = (
            (c.namespace, c.metric, c.median)
            if c
            else ("overall", result.overall["metric"], result.overall["median"])
        )
        print(
            f"{name:<28} metric AbsRel {fmt(m.get('abs_rel'))} RMSE {fmt(m.get('rmse'))} "
            f"d1 {fmt(m.get('a1'))} | median-scaled AbsRel {fmt(md.get('abs_rel'))} "
            f"d1 {fmt(md.get('a1'))}"
        )
        ts = c.temporal_stability if c else result.overall.get("temporal_stability")
        if ts and ts.get("pairs"):
            print(
                f"{'':<28} temporal stability ({ts['method']}) median {fmt(ts['median'])} "
                f"p90 {fmt(ts['p90'])} over {ts['pairs']} frame pairs"
            )
    f = result.frames
    print(
        f"frames: {f['evaluated']} evaluated of {f['images_read']} images read, {f['dropped']} dropped"
        + ("".join(f"\n  {k}: {v}" for k, v in result.drops.items()))
    )
    print(
        f"{result.timing['frames_per_second']:.2f} frames/s, "
        f"model {result.timing.get('inference_ms', 0):.1f} ms/frame; "
        f"report: {result.paths.get('report_html')}"
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0 if f["evaluated"] else 1


def run_fleet(args: argparse.Namespace, bags: list[str]) -> int:
    """Several bags: ``replay.fleet``; prints one line per failed bag and the totals."""
    from ..replay.fleet import evaluate_fleet

    config = config_from_args(args)
    if config.output_bag:
        raise UsageError("--output-bag takes one bag; a fleet evaluation writes no output bags")
    if config.start_s or config.end_s:
        raise UsageError("--start/--end select a window of one bag; a fleet splits its bags with --segment")
    runner = None
    if args.ray:
        from ..replay.fleet import RayPool, ray_runner

        runner = ray_runner(RayPool(args.ray, args.ray_num_cpus, args.ray_num_gpus, args.ray_workers))
    s = evaluate_fleet(
        config, bags, config.report_dir, args.force, not args.no_progress, runner, segment_s=args.segment
    )
    for f in s["failed"]:
        print(f"failed: {f['bag']}: {f['reason']}")
    m = s["overall"]["metric"]
    fmt = lambda v: "nan" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"{s['ok']} of {s['bags']} bags evaluated ({s['resumed_bags']} kept from an earlier run), "
        f"{s['frames_scored']} frames; fleet metric AbsRel {fmt(m.get('abs_rel'))} RMSE "
        f"{fmt(m.get('rmse'))} d1 {fmt(m.get('a1'))}; {s['wall_s']:.1f} s; report: {s['paths']['fleet_html']}"
    )
    return 0 if s["ok"] else 1
