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
stops the container with ``cannot start: <reason>`` (exit 2). Nodes sharing an engine call it under
its lock, so the multi-threaded executor never runs one model twice at the same time. SIGINT or
SIGTERM, at any time, stop every node's worker after its frame in flight and then rclpy (exit 0;
see ros.runner).
"""

from __future__ import annotations

import sys

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from ..engine import EnginePool
from .mono_node import MonoDepthNode
from .runner import run_nodes
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


def build_nodes(container: Node, nodes: list) -> None:
    """Build the nodes the container's ``nodes`` parameter lists, appending each to ``nodes`` as it
    is made (so a failure or a signal half-way still destroys the ones already built)."""
    entries = [e for e in container.get_parameter("nodes").value if e.strip()]
    if not entries:
        raise ValueError("parameter 'nodes' is empty: nothing to run")
    pool = EnginePool() if container.get_parameter("share_engine").value else None
    for entry in entries:
        kind, ns, name = parse_entry(entry)
        node = KINDS[kind][0](name, namespace=ns, engine=pool)
        nodes.append(node)
        container.get_logger().info(f"started {kind} node {node.get_fully_qualified_name()}")
    if pool is not None:
        for eng in pool.engines():
            users = [n.get_fully_qualified_name() for n in nodes if getattr(n, "engine", None) is eng]
            container.get_logger().info(
                f"one {eng.config.model} model ({eng.config.backend}, batch {eng.config.batch}, "
                f"weights {eng.weights_source}) shared by {len(users)} node(s): {users}"
            )


def build_container(nodes: list):
    """The container node and its depth nodes (appended to ``nodes``); the executor to spin them."""
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    container = Node("bore_depth_container")
    nodes.append(container)
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
    build_nodes(container, nodes)
    threads = int(container.get_parameter("threads").value)
    return MultiThreadedExecutor(num_threads=threads) if threads > 0 else SingleThreadedExecutor()


def main(argv=None) -> int:
    """Exit codes as the node executables (ros.runner): 0 when stopped by SIGINT/SIGTERM, at any
    time; 2 with ``cannot start: <reason>`` when an entry or a node cannot start."""
    return run_nodes(build_container, "bore_depth_container", argv)


if __name__ == "__main__":
    sys.exit(main())
