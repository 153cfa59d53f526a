"""``bore-depth synth``: render a synthetic camera-rig recording with ground truth (rosbag2)."""

from __future__ import annotations

import argparse

HELP = "render a synthetic camera-rig recording with ground truth (rosbag2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..sim.recording import add_synth_arguments

    add_synth_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..sim.recording import run_synth

    return run_synth(args)
