"""The output bag of a replay: the node's per-view output topics plus copies of the inputs rviz needs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..bag.messages import TYPESTORE, factory
from ..bag.reader import TF_STATIC_TOPIC
from ..bag.writer import BagWriter
from ..core.messages import VIEW_CONFIDENCE



def _find_msg_file(name: str = "ViewConfidence.msg") -> Path:
    here = Path(__file__).resolve().parents[2] / "bore_depth_ros_msgs" / "msg" / name   # source checkout
    candidates = [here]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "bore_depth_ros_msgs" / "msg" / name)
    candidates.append(Path(sys.prefix) / "share" / "bore_depth_ros_msgs" / "msg" / name)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{name} not found (looked in {', '.join(str(c) for c in candidates)})")


def view_confidence_typestore():
    """A copy of the Jazzy typestore with bore_depth_ros_msgs/msg/ViewConfidence registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)   # a new instance: the shared TYPESTORE stays as is
    store.register(get_types_from_msg(_find_msg_file().read_text(), VIEW_CONFIDENCE))
    return store


class OutputBag:
    """The node's output topics per camera plus copies of the inputs rviz needs."""

    def __init__(self, path: str, storage: str, copy_topics: set[str]):
        self.store = view_confidence_typestore()
        self.factory = factory(self.store)
        self.bag = BagWriter(path, storage, typestore=self.store)
        self.bag.__enter__()
        self.copy_topics = copy_topics
        self.path = str(path)

    def close(self) -> None:
        self.bag.__exit__(None, None, None)

    def copy(self, conn, log_ns: int, raw: bytes) -> None:
        if conn.topic in self.copy_topics and conn.msgtype in TYPESTORE.fielddefs:
            self.bag.write_raw(conn.topic, conn.msgtype, bytes(raw), log_ns,
                               latched=conn.topic == TF_STATIC_TOPIC)
