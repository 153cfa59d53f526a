"""``bore-depth play``: publish a rosbag2 file over ROS 2 with /clock (use_sim_time)."""

from __future__ import annotations

import argparse

from .argtypes import non_negative_float, positive_float
from .errors import command

HELP = "publish a rosbag2 file over ROS 2 with /clock (use_sim_time)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag")
    p.add_argument("--rate", type=positive_float, default=1.0, help="playback speed factor")
    p.add_argument("--clock-hz", type=non_negative_float, default=100.0, help="/clock rate (0 = no /clock)")
    p.add_argument("--topics", nargs="*", help="only these topics")
    p.add_argument(
        "--wait-for",
        nargs="*",
        default=[],
        metavar="TOPIC",
        help="wait until these topics have subscribers before playing",
    )
    p.add_argument("--wait-timeout", type=non_negative_float, default=30.0, help="seconds")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--no-progress", action="store_true")


@command("play", stop_is_success=True)  # SIGINT/SIGTERM end playback like a node's: exit 0
def run(args: argparse.Namespace) -> int:
    from ..ros.bag_player import run_play

    run_play(
        args.bag,
        args.rate,
        args.clock_hz,
        args.topics,
        args.wait_for,
        args.wait_timeout,
        args.loop,
        not args.no_progress,
    )
    return 0
