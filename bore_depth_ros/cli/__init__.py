"""``bore-depth``: the project's command line, one module per sub-command.

Each ``cli/<command>.py`` has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit code``;
argparse stays here, and ``run`` calls the library (importing it only when the command runs).

Errors and exit codes are handled in one place, ``cli/errors.py`` (docs/cli.md): every error is
one line on stderr, ``bore-depth <cmd>: error: <cause>``, naming the file where there is one, and
exit code 2 (argparse's code for usage errors; 1 is a failed result or an internal error); no
traceback unless ``--debug`` is given (on ``bore-depth`` or on the sub-command). Ctrl-C exits 130
and SIGTERM 143 with one line, except for ``play``, which like the node executables treats both as
a requested stop (exit 0). Argument types that refuse bad values before any work are in
``cli/argtypes.py``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from importlib import import_module

from . import errors

# Sub-commands in the order ``bore-depth --help`` lists them (module names in this package).
COMMANDS = ("demo", "synth", "eval", "play", "train", "label", "export", "prebuild", "bench")
DEBUG_HELP = "show the traceback of an error instead of its one-line summary"


def build_parser() -> argparse.ArgumentParser:
    """The ``bore-depth`` parser with every sub-command; ``args.command`` names the chosen one."""
    parser = errors.Parser(prog="bore-depth", description="``bore-depth``: the project's command line.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = import_module(f".{name}", __name__)
        p = sub.add_parser(name, help=command.HELP)
        # SUPPRESS: without --debug here, bore-depth's own --debug value stays
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        command.add_arguments(p)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = errors.raise_on_sigterm()

    def dispatch(_) -> int:
        args = build_parser().parse_args(argv)
        return errors.run_command(args.command, import_module(f".{args.command}", __name__).run, args)

    # the commands' run() are wrapped already (errors.command); this catches what comes before
    # them and the commands whose run is not
    try:
        return errors.run_command("", dispatch, argparse.Namespace(debug="--debug" in argv))
    finally:
        if previous is not None:  # main() called in a process that goes on (tests)
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
