"""``bore-depth``: the project's command line, one module per sub-command.

Each ``cli/<command>.py`` has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit code``;
argparse stays here, and ``run`` calls the library (importing it only when the command runs).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# Sub-commands in the order ``bore-depth --help`` lists them (module names in this package).
COMMANDS = ("demo", "synth", "eval", "play", "train", "export", "prebuild", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The ``bore-depth`` parser with every sub-command; ``args.command`` names the chosen one."""
    parser = argparse.ArgumentParser(
        prog="bore-depth", description="``bore-depth``: the project's command line."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = import_module(f".{name}", __name__)
        command.add_arguments(sub.add_parser(name, help=command.HELP))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return import_module(f".{args.command}", __name__).run(args)


if __name__ == "__main__":
    sys.exit(main())
