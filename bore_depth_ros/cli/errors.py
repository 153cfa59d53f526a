"""How a ``bore-depth`` command ends: exit codes, one-line errors, ``--debug``, interrupts.

The one place for every sub-command: the dispatcher runs each command through :func:`run_command`,
and each command's ``run`` is wrapped in it too (:func:`command`), so calling ``run(args)``
directly gives the same lines and codes.

Exit codes (docs/cli.md)
    0    done; for ``play``, which serves ROS 2 like the nodes, also stopped by SIGINT/SIGTERM
    1    done, but the result is a failure (an export or a bench row failed, eval evaluated no
         frame), or an internal error: ``bore-depth <cmd>: internal error: <type>: <message>``,
         a bug to report (``--debug`` shows where)
    2    error: the command cannot do what was asked; one line ``bore-depth <cmd>: error: <cause>``
         on stderr, naming the file where there is one. Argparse's usage errors, bad values,
         missing or unreadable files (bags, YAML, checkpoints), outputs that would be replaced
         without ``--force``, a missing runtime (backend), a diverged training run
    3    ``prebuild``: the built engine failed its numeric self-check
    130  interrupted by SIGINT (Ctrl-C): ``bore-depth <cmd>: interrupted``
    143  terminated by SIGTERM: ``bore-depth <cmd>: terminated``

``--debug`` (before or after the sub-command) prints the traceback instead of the one line; the
exit code stays the same.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import traceback

OK, FAILED, ERROR, SELF_CHECK_FAILED = 0, 1, 2, 3
INTERRUPTED, TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM

# Exceptions that mean "this cannot be done as asked" (exit 2), besides ValueError (the project's
# BagError, InputRejected... are ValueErrors) and OSError. Named by module so none is imported
# for the check: an exception of a class whose module is not loaded cannot have been raised.
EXPECTED_ELSEWHERE = (
    ("bore_depth_ros.backends.base", "BackendUnavailable"),
    ("bore_depth_ros.models.checkpoint", "CheckpointError"),
    ("bore_depth_ros.train.state", "TrainingDiverged"),
    ("yaml", "YAMLError"),
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt, so that the same
    clean-up runs (and code that stops on KeyboardInterrupt, such as ``play``, stops on it)."""


def _raise_terminated(signum, frame) -> None:
    if os.getpid() != _raise_terminated.pid:  # a forked child: keep the default (die quietly)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


def raise_on_sigterm():
    """SIGTERM raises :class:`Terminated` in this process; returns the previous handler (None
    when not called from the main thread, where signal handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _raise_terminated.pid = os.getpid()
    return signal.signal(signal.SIGTERM, _raise_terminated)


class UsageError(ValueError):
    """A bad argument found after parsing (the message starts with ``argument --name:``)."""


def is_expected(exc: BaseException) -> bool:
    if isinstance(exc, (ValueError, OSError)):
        return True
    if isinstance(exc, KeyError):  # the registries' "unknown model 'x'; ..." (a bare key is a bug)
        return isinstance(exc.args[0] if exc.args else None, str) and " " in exc.args[0]
    for module, name in EXPECTED_ELSEWHERE:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BaseException) -> str:
    """The cause, on one line, naming the file where the exception has one."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return one_line(f"{exc.strerror}: {files}")
    if type(exc).__module__.startswith("yaml") and hasattr(exc, "problem"):
        mark = getattr(exc, "problem_mark", None)
        where = ""
        if mark is not None:
            name = "" if mark.name.startswith("<") else f"{mark.name} "
            where = f" ({name}line {mark.line + 1}, column {mark.column + 1})"
        return one_line(f"invalid YAML: {exc.problem}{where}")
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return one_line(exc.args[0])
    return one_line(str(exc)) or type(exc).__name__


def say(command: str, text: str) -> None:
    """Print ``bore-depth <command>: <text>`` on stderr (one line)."""
    print(f"bore-depth {command}: {text}" if command else f"bore-depth: {text}", file=sys.stderr, flush=True)


def run_command(command: str, run, args: argparse.Namespace, *, stop_is_success: bool = False) -> int:
    """``run(args)``'s exit code, or the code and one line for an exception it raised."""
    debug = bool(getattr(args, "debug", False))
    try:
        return run(args)
    except KeyboardInterrupt as e:
        if debug:
            traceback.print_exc()
        if stop_is_success:
            return OK
        terminated = isinstance(e, Terminated)
        say(command, "terminated" if terminated else "interrupted")
        return TERMINATED if terminated else INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every failure ends as one line and an exit code
        expected = is_expected(e)
        if debug:
            traceback.print_exc()
        elif expected:
            say(command, f"error: {describe(e)}")
        else:
            say(
                command,
                f"internal error: {type(e).__name__}: {describe(e)} (--debug shows the traceback)",
            )
        return ERROR if expected else FAILED


def command(name: str, *, stop_is_success: bool = False):
    """Decorator for a command module's ``run(args)``: the same ending as through the dispatcher."""

    def wrap(run):
        @functools.wraps(run)
        def guarded(args: argparse.Namespace) -> int:
            return run_command(name, run, args, stop_is_success=stop_is_success)

        return guarded

    return wrap


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bore-depth <cmd>: error: <message>``, exit 2 (no usage
    block; ``--help`` has it)."""

    def error(self, message: str):
        self.exit(ERROR, f"{self.prog}: error: {one_line(message)}\n")
