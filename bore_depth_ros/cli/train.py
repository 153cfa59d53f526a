"""``bore-depth train CONFIG.yaml``: train or distil a model on rosbag2 recordings (YAML config).

Errors are one line on stderr and exit code 2, no traceback: bad settings, missing or unreadable
recordings, a run folder that may not be replaced, unusable weights (``init_weights``, a teacher's,
a ``last.ckpt`` holding NaN) and a diverged run (non-finite loss or weights: the error names the
step, the loss and the last good files, which are kept as they were)."""

from __future__ import annotations

import argparse
import sys

HELP = "train or distil a model on rosbag2 recordings (YAML config)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training YAML (see config/train/)")
    p.add_argument("--steps", type=int, default=0, help="override the config's steps")
    p.add_argument("--out-dir", default="", help="override the config's out_dir")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--force", action="store_true", help="replace a run already in the output folder")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    from ..train.config import TrainConfig
    from ..train.state import TrainingDiverged
    from ..train.trainer import train

    try:
        cfg = TrainConfig.from_yaml(args.config)
        for k in ("steps", "out_dir", "max_minutes", "force"):  # zero / empty / false keeps the config's
            v = getattr(args, k, None)
            if v:
                setattr(cfg, k, v)
        train(cfg, progress=not args.quiet)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, CheckpointError, TrainingDiverged) as e:
        print(f"bore-depth train: {e}", file=sys.stderr)
        return 2
    return 0
