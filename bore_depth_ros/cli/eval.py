"""``bore-depth eval``: run the depth pipeline on a rosbag2 and compare with ground truth (offline).

The options and the runner still live in :mod:`bore_depth_ros.replay.evaluate`.
"""
from __future__ import annotations

import argparse

HELP = "run the depth pipeline on a rosbag2 and compare with ground truth (offline)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..replay.evaluate import add_eval_arguments

    add_eval_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..replay.evaluate import run_eval

    return run_eval(args)
