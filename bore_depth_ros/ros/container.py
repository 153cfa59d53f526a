"""Several depth nodes in one process, one executor and one loaded model (Python "composition").

rclpy has no component container that rclcpp could load nodes into, so this entry point plays
that role: it reads the list of nodes from its own parameters, builds the model once, hands the
same ``DepthEngine`` to every node that can share it, and spins them all on one executor.

    bore-depth-container --ros-args --params-file config/six_mono.yaml

The container's parameters (node name ``bore_depth_container``):
    nodes: ["mono /cameras/front", "mono /cameras/back front_depth", "surround /cameras"]
           each entry is "<kind> <namespace> [<node name>]", kind mono or surround
    share_engine: true      nodes with the same engine parameters share one loaded model
    threads: 2              executor threads (0 = single-threaded)
Every node reads its own parameters from the same file (``/**`` or its full name).
The nodes are lifecycle nodes: with ``autostart: false`` in their parameters they wait for a
lifecycle manager (each has its own ``~/change_state``); a node whose autostart configure fails
stops the container with ``cannot start: <reason>``. Nodes sharing an engine call it under its
lock, so the multi-threaded executor never runs one model twice at the same time.
"""

from __future__ import annotations

import sys

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from ..engine import EnginePool
from .mono_node import MonoDepthNode
from .surround_node import SurroundDepthNode

KINDS = {"mono": (MonoDepthNode, "bore_depth_mono"), "surround": (SurroundDepthNode, "bore_depth_surround")}


def parse_entry(entry: str) -> tuple[str, str, str]:
    parts = entry.split()
    if not 2 <= len(parts) <= 3 or parts[0] not in KINDS:
        raise ValueError(
            f"node entry '{entry}' is not '<kind> <namespace> [<name>]' with kind in {sorted(KINDS)}"
        )
    kind, ns = parts[0], parts[1]
    return kind, ns, parts[2] if len(parts) == 3 else KINDS[kind][1]


def build_nodes(container: Node) -> list[Node]:
    entries = [e for e in container.get_parameter("nodes").value if e.strip()]
    if not entries:
        raise ValueError("parameter 'nodes' is empty: nothing to run")
    pool = EnginePool() if container.get_parameter("share_engine").value else None
    nodes = []
    for entry in entries:
        kind, ns, name = parse_entry(entry)
        node = KINDS[kind][0](name, namespace=ns, engine=pool)
        nodes.append(node)
        container.get_logger().info(f"started {kind} node {node.get_fully_qualified_name()}")
    if pool is not None:
        for eng in pool.engines():
            users = [n.get_fully_qualified_name() for n in nodes if n.engine is eng]
            container.get_logger().info(
                f"one {eng.config.model} model ({eng.config.backend}, batch {eng.config.batch}, "
                f"weights {eng.weights_source}) shared by {len(users)} node(s): {users}"
            )
    return nodes


def main(argv=None) -> int:
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=argv if argv is not None else sys.argv)
    container = Node("bore_depth_container")
    container.declare_parameter(
        "nodes",
        [""],
        ParameterDescriptor(
            description="'<kind> <namespace> [<name>]' entries, kind mono or surround", read_only=True
        ),
    )
    container.declare_parameter(
        "share_engine",
        True,
        ParameterDescriptor(
            description="nodes with the same engine parameters share one loaded model", read_only=True
        ),
    )
    container.declare_parameter(
        "threads",
        2,
        ParameterDescriptor(description="executor threads (0 = single-threaded)", read_only=True),
    )
    try:
        nodes = build_nodes(container)
    except Exception as e:  # noqa: BLE001 - a bad entry, checkpoint, backend...: say which and exit
        container.get_logger().fatal(f"cannot start: {type(e).__name__}: {e}")
        rclpy.try_shutdown()
        return 2
    threads = int(container.get_parameter("threads").value)
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 0 else SingleThreadedExecutor()
    for n in [container, *nodes]:
        executor.add_node(n)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for n in nodes:
            n.destroy_node()
        container.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
