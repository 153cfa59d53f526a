"""Entry-point plumbing shared by the node executables: start-up, spinning, and stopping on a signal.

Exit codes of ``bore-depth-mono-node``, ``bore-depth-surround-node`` and ``bore-depth-container``
(docs/cli.md):

- **0**: stopped by SIGINT or SIGTERM. A signal is a requested stop whenever it arrives, during
  start-up too (logged ``interrupted during start-up (SIGINT)``, INFO); ``ros2 launch`` sends SIGINT
  on Ctrl-C and reports any other exit code as "process has died".
- **2**: cannot start (bad checkpoint, model, backend, input size, node entry...): FATAL
  ``cannot start: <reason>``, no traceback.

rclpy's own signal handlers are not installed (``SignalHandlerOptions.NO``): they shut the context
down at once, while a depth node's worker thread may still be publishing a frame (that ended in
``ERROR processing failed ... context is invalid``). Here a signal only sets a flag; the executor
is spun in short slices so the flag is seen within ``POLL_S``, then the stop goes in order: no more
callbacks, every node destroyed (a depth node's ``destroy_node`` stops its worker after the frame
in flight, which is published while the context is still valid), and only then rclpy shuts down.
During start-up (the constructor loads and checks the model, which can take minutes) the signal
raises :class:`StartupInterrupted` instead, so a Ctrl-C does not wait for the model.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.1  # how long one executor slice may wait: the longest a signal goes unnoticed


class StartupInterrupted(BaseException):
    """SIGINT/SIGTERM arrived while the nodes were being built. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way (a failed configure is caught and
    reported) mistakes it for a start-up failure."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT and SIGTERM as a request to stop: during start-up they raise
    :class:`StartupInterrupted`; once :meth:`serving` is called they only record the first signal
    (``requested``), for the spin loop to see. Later signals are ignored: the stop is under way."""

    def __init__(self):
        self.signum: int | None = None
        self._starting = True
        self._previous: dict = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal.signal's own rule
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._on_signal)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def serving(self) -> None:
        self._starting = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "no signal"

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if self._starting:
            raise StartupInterrupted(signum)


def run_nodes(build: Callable[[list], object], logger_name: str, argv=None) -> int:
    """Init rclpy, build the nodes, spin them until SIGINT/SIGTERM, stop in order; the exit code.

    ``build(nodes)`` appends each node to ``nodes`` as soon as it exists (so a failure or a signal
    half-way still destroys the ones already built) and returns the executor to spin them on, or
    None for a single-threaded one.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    logger = rclpy.logging.get_logger(logger_name)
    stops = StopSignals().install()
    nodes: list = []
    try:
        try:
            rclpy.init(
                args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO
            )
            executor = build(nodes) or SingleThreadedExecutor()
            stops.serving()
        except StartupInterrupted as e:
            logger.info(f"interrupted during start-up ({e}): stopping")
            return 0
        except Exception as e:  # noqa: BLE001 - any start-up failure is reported the same way
            stops.serving()  # a signal now is no start-up interrupt: the process is ending anyway
            logger.fatal(f"cannot start: {type(e).__name__}: {e}")
            return 2
        for node in nodes:
            executor.add_node(node)
        try:
            while not stops.requested and executor.context.ok():
                executor.spin_once(timeout_sec=POLL_S)
        except ExternalShutdownException:
            pass
        if stops.requested:
            (nodes[0].get_logger() if nodes else logger).info(f"{stops.name} received: stopping")
        executor.shutdown()
        return 0
    except StartupInterrupted as e:  # arrived while a start-up failure was being handled
        logger.info(f"interrupted during start-up ({e}): stopping")
        return 0
    finally:
        # nodes first: their workers finish the frame in flight while the context is still valid
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
        stops.restore()


def run_node(factory, logger_name: str, argv=None) -> int:
    """Init rclpy, build the node with ``factory()``, spin it until SIGINT/SIGTERM (exit 0).

    A node that cannot start (bad checkpoint, model, backend, input size, camera list...) logs
    ``cannot start: <reason>`` and the process exits with code 2 instead of a traceback.
    """
    return run_nodes(lambda nodes: nodes.append(factory()), logger_name, argv)
