"""``bore-depth``: the project's command line."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bore-depth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="render a recording, evaluate it, run the live node on it")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--backend", default="onnxruntime", choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--weights", default="", help="checkpoint or .onnx (default: embedded)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--seed", type=int, default=0)

    from .sim.recording import add_synth_arguments

    add_synth_arguments(sub.add_parser(
        "synth", help="render a synthetic camera-rig recording with ground truth (rosbag2)"))

    from .replay.evaluate import add_eval_arguments

    add_eval_arguments(sub.add_parser(
        "eval", help="run the depth pipeline on a rosbag2 and compare with ground truth (offline)"))

    p = sub.add_parser("play", help="publish a rosbag2 file over ROS 2 with /clock (use_sim_time)")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate (0 = no /clock)")
    p.add_argument("--topics", nargs="*", help="only these topics")
    p.add_argument("--wait-for", nargs="*", default=[], metavar="TOPIC",
                   help="wait until these topics have subscribers before playing")
    p.add_argument("--wait-timeout", type=float, default=30.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("train", help="train or distil a model on rosbag2 recordings (YAML config)")
    p.add_argument("config", help="training YAML (see config/train/)")
    p.add_argument("--steps", type=int, default=0, help="override the config's steps")
    p.add_argument("--out-dir", default="", help="override the config's out_dir")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after")
    p.add_argument("--quiet", action="store_true")

    from .deploy import add_bench_arguments, add_export_arguments, add_prebuild_arguments

    add_export_arguments(sub.add_parser(
        "export", help="export models to ONNX (checked against PyTorch through ONNX Runtime)"))
    add_prebuild_arguments(sub.add_parser(
        "prebuild", help="build and cache a TensorRT engine ahead of time (on the target)"))
    add_bench_arguments(sub.add_parser(
        "bench", help="latency/FPS/memory table per model, backend, size and batch"))

    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, args.frames, args.backend, args.weights, args.width, args.height,
                 args.seed)
        return 0
    if args.command == "synth":
        from .sim.recording import run_synth

        return run_synth(args)
    if args.command == "eval":
        from .replay.evaluate import run_eval

        return run_eval(args)
    if args.command == "play":
        from .ros.bag_player import run_play

        run_play(args.bag, args.rate, args.clock_hz, args.topics, args.wait_for,
                 args.wait_timeout, args.loop, not args.no_progress)
        return 0
    if args.command == "train":
        from .train.trainer import main_train

        return main_train(args)
    if args.command in ("export", "prebuild", "bench"):
        from . import deploy

        return {"export": deploy.run_export, "prebuild": deploy.run_prebuild,
                "bench": deploy.run_bench}[args.command](args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
