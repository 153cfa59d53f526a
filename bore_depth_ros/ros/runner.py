"""Entry-point plumbing shared by the node executables."""

from __future__ import annotations

import sys


def run_node(factory, logger_name: str, argv=None) -> int:
    """Init rclpy, build the node with ``factory()``, spin it until shutdown.

    A node that cannot start (bad checkpoint, model, backend, input size, camera list...) logs
    ``cannot start: <reason>`` and the process exits with code 2 instead of a traceback.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = factory()
    except Exception as e:  # noqa: BLE001 - any start-up failure is reported the same way
        rclpy.logging.get_logger(logger_name).fatal(f"cannot start: {type(e).__name__}: {e}")
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
