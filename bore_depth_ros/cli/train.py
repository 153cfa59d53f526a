"""``bore-depth train CONFIG.yaml``: train or distil a model on rosbag2 recordings (YAML config)."""

from __future__ import annotations

import argparse

HELP = "train or distil a model on rosbag2 recordings (YAML config)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training YAML (see config/train/)")
    p.add_argument("--steps", type=int, default=0, help="override the config's steps")
    p.add_argument("--out-dir", default="", help="override the config's out_dir")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig
    from ..train.trainer import train

    cfg = TrainConfig.from_yaml(args.config)
    for k in ("steps", "out_dir", "max_minutes"):  # a zero / empty option keeps the config's value
        v = getattr(args, k, None)
        if v:
            setattr(cfg, k, v)
    train(cfg, progress=not args.quiet)
    return 0
