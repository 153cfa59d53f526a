"""A client node that feeds camera frames to a depth node and records every output by stamp.

Used by the embedded demo, the benchmarks and the tests, so all three exercise the node exactly
as a robot would: over real topics, with the node's remappable names.
"""

from __future__ import annotations

import collections

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from bore_depth_ros_msgs.msg import ViewConfidence

OUTPUTS = {
    "depth/image": Image,
    "depth/camera_info": CameraInfo,
    "confidence/image": Image,
    "points": PointCloud2,
    "view_confidence": ViewConfidence,
}


def stamp_key(stamp) -> tuple[int, int]:
    return (stamp.sec, stamp.nanosec)


class DepthProbe(Node):
    """Publishes ``<ns>/image`` + ``<ns>/camera_info`` (sensor-data QoS unless ``input_qos``:
    reliable writers give exact counts against a node whose inputs are made reliable through
    ``qos_overrides``); records ``<ns>/<output>`` and diagnostics."""

    def __init__(
        self,
        ns: str,
        name: str = "depth_probe",
        outputs=OUTPUTS,
        keep: int = 1000,
        input_qos=qos_profile_sensor_data,
        **node_kwargs,
    ):
        super().__init__(name, **node_kwargs)
        self.ns = ns.rstrip("/")
        self.outputs = dict(outputs)
        self.pub_image = self.create_publisher(Image, f"{self.ns}/image", input_qos)
        self.pub_info = self.create_publisher(CameraInfo, f"{self.ns}/camera_info", input_qos)
        self.received: dict[tuple[int, int], dict[str, object]] = collections.OrderedDict()
        self.arrival: dict[tuple[int, int], float] = {}
        self.diagnostics: collections.deque[DiagnosticArray] = collections.deque(maxlen=200)
        self._keep = keep
        reliable = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
        for topic, typ in self.outputs.items():
            self.create_subscription(
                typ, f"{self.ns}/{topic}", lambda m, t=topic: self._store(t, m), reliable
            )
        self.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.diagnostics.append(m), 50)

    def _store(self, topic: str, msg) -> None:
        key = stamp_key(msg.header.stamp)
        slot = self.received.setdefault(key, {})
        slot[topic] = msg
        if len(slot) == len(self.outputs):
            self.arrival[key] = self.get_clock().now().nanoseconds * 1e-9
        while len(self.received) > self._keep:
            old, _ = self.received.popitem(last=False)
            self.arrival.pop(old, None)

    def publish(self, image: Image, info: CameraInfo | None) -> None:
        if info is not None:
            self.pub_info.publish(info)
        self.pub_image.publish(image)

    def connected(self) -> bool:
        """True once the node subscribes to our inputs and publishes every output."""
        return (
            self.pub_image.get_subscription_count() > 0
            and self.pub_info.get_subscription_count() > 0
            and all(self.count_publishers(f"{self.ns}/{t}") > 0 for t in self.outputs)
        )

    def complete(self, stamp) -> bool:
        return len(self.received.get(stamp_key(stamp), {})) == len(self.outputs)

    def latest_diagnostic_values(self, name_part: str) -> dict[str, str]:
        for arr in reversed(self.diagnostics):
            for st in arr.status:
                if name_part in st.name:
                    return {kv.key: kv.value for kv in st.values}
        return {}
