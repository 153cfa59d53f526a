"""``bore-depth demo``: render a recording, evaluate it, run the live node on it."""

from __future__ import annotations

import argparse

from .argtypes import folder, positive_int
from .errors import command

HELP = "render a recording, evaluate it, run the live node on it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=folder, default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--frames", type=positive_int, default=6)
    p.add_argument("--backend", default="onnxruntime", choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--weights", default="", help="checkpoint or .onnx (default: embedded)")
    p.add_argument("--width", type=positive_int, default=320)
    p.add_argument("--height", type=positive_int, default=192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace earlier demo outputs in --out")


@command("demo")
def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(
        args.out,
        args.frames,
        args.backend,
        args.weights,
        args.width,
        args.height,
        args.seed,
        force=args.force,
    )
    return 0
