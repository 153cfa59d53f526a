"""``bore-depth synth``: render a synthetic camera-rig recording with ground truth (rosbag2)."""

from __future__ import annotations

import argparse

from .argtypes import check, new_path, non_negative_float, positive_float, positive_int
from .errors import command

HELP = "render a synthetic camera-rig recording with ground truth (rosbag2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..sim.recording import add_synth_arguments

    add_synth_arguments(p)


@command("synth")
def run(args: argparse.Namespace) -> int:
    from ..sim.recording import run_synth

    # the arguments are declared in sim.recording; their values are checked here, each by name,
    # before the simulator is loaded
    check(
        args,
        positional=("out",),
        out=new_path,
        frames=positive_int,
        width=positive_int,
        height=positive_int,
        rate=positive_float,
        jitter_ms=non_negative_float,
    )
    if args.density is not None:  # None: the default, or drawn with --randomise
        check(args, density=non_negative_float)
    return run_synth(args)
