"""``bore-depth train CONFIG.yaml``: train or distil a model on rosbag2 recordings (YAML config).

Errors are one line on stderr and exit code 2, no traceback: bad settings, missing or unreadable
recordings, a run folder that may not be replaced, unusable weights (``init_weights``, a teacher's,
a ``last.ckpt`` holding NaN) and a diverged run (non-finite loss or weights: the error names the
step, the loss and the last good files, which are kept as they were)."""

from __future__ import annotations

import argparse

from .argtypes import non_negative_float, non_negative_int
from .errors import command

HELP = "train or distil a model on rosbag2 recordings (YAML config)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training YAML (see config/train/)")
    p.add_argument("--steps", type=non_negative_int, default=0, help="override the config's steps (0: keep)")
    p.add_argument("--out-dir", default="", help="override the config's out_dir")
    p.add_argument(
        "--max-minutes", type=non_negative_float, default=0.0, help="stop (checkpointed) after; 0: no limit"
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--force", action="store_true", help="replace a run already in the output folder")


@command("train")
def run(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig
    from ..train.trainer import train

    cfg = TrainConfig.from_yaml(args.config)
    for k in ("steps", "out_dir", "max_minutes", "force"):  # zero / empty / false keeps the config's
        v = getattr(args, k, None)
        if v:
            setattr(cfg, k, v)
    train(cfg, progress=not args.quiet)
    return 0
