"""``bore-depth prebuild``: build and cache a TensorRT engine ahead of time (on the target)."""

from __future__ import annotations

import argparse

from .argtypes import model_name, positive_int
from .errors import SELF_CHECK_FAILED, command, say

HELP = "build and cache a TensorRT engine ahead of time (on the target)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=model_name, default="bore_depth")
    p.add_argument("--onnx", default=None, help="build from this ONNX file instead of --model")
    p.add_argument("--weights", default="")
    p.add_argument("--height", type=positive_int, default=None)
    p.add_argument("--width", type=positive_int, default=None)
    p.add_argument("--batch", type=positive_int, default=None)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--engine-cache-dir", default=None, help="default: $BORE_DEPTH_CACHE/engines")
    p.add_argument("--force-rebuild", action="store_true", help="ignore a cached engine")
    p.add_argument("--list", action="store_true", help="list the cached engines and exit")


@command("prebuild")
def run(args: argparse.Namespace) -> int:
    """0 on success, 2 if TensorRT/CUDA is missing, 3 if the self-check refused the engine."""
    from ..backends import EngineSelfCheckFailed
    from ..deploy.prebuild import list_engines, prebuild

    if args.list:
        lines = list_engines(args.engine_cache_dir)
        print("\n".join(lines) if lines else "no cached engines")
        return 0
    try:
        facts = prebuild(
            args.model,
            args.onnx,
            args.weights,
            args.height,
            args.width,
            args.batch,
            args.precision,
            args.device,
            None,
            args.engine_cache_dir,
            args.force_rebuild,
        )
    except EngineSelfCheckFailed as e:
        say("prebuild", f"error: {e}")
        return SELF_CHECK_FAILED
    print("\n".join(f"{k}: {v}" for k, v in facts.items()))
    return 0
